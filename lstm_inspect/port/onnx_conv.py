"""ONNX emitters of the conv layers (lstm_inspect.layers.conv): written next."""
