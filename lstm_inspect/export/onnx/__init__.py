"""The ONNX target: `build` writes the graph; one module per layer family registers its emitters."""
