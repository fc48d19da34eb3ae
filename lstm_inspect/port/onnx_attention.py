"""ONNX emitters of the attention layers (lstm_inspect.layers.attention): written next."""
