"""The PyTorch target: `build` writes model.py + safetensors; one module per layer family registers its emitters."""
