"""Reading files: every checkpoint format (one module each), the user's input arrays and the arrays lstm-inspect
writes. Nothing here imports TensorFlow.
"""
