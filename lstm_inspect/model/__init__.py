"""What a Keras checkpoint is, whatever file it came from: its recurrent cells (`cells/`: config, storage, gates,
step equations), the activations they name, the parsed layer graph (`architecture`) and the `Checkpoint` with its
`RecurrentDirection`s (`checkpoint`). Nothing here reads a file or runs a graph.
"""
