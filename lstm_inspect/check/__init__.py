"""What lstm-inspect concludes about a model or a port: `verify` (against Keras itself, run safely by
`keras_ref`, or against the user's outputs), `diagnose` (which porting mistake reproduces them) and `stats`.
"""
