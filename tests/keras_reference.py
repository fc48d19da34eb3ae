"""Ask Keras itself for the LSTM weights of real-world checkpoints (run in a subprocess).

    python tests/keras_reference.py keras3|tf_keras OUT_DIR FILE...

For each FILE writes OUT_DIR/<file name>.ref.npz keyed '<direction path>:kernel|recurrent_kernel|bias',
the weights `get_weights()` reports after Keras's own loader has read (and, for Keras 1 and
CuDNNLSTM files, converted) them. The Keras generation is the one that wrote the file; files Keras
cannot load as a model (Keras 1, weights only) are rebuilt by hand as their catalog entry says,
then filled by Keras's `load_weights`. These are our own test files, so loading them is safe.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample_models"))
from generate import lstm_directions

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # channels_first convolutions run on every CPU (conftest.py)


def _rebuilt_tf_keras(path: Path):  # type: ignore[no-untyped-def]
    import h5py
    import tf_keras as keras
    from tf_keras import layers

    if path.name.startswith("charlstm_stateful_keras108"):
        # CATALOG.md: LSTM(150, hard_sigmoid, return_sequences) -> LSTM(128, hard_sigmoid) -> Dense(29) -> softmax
        model = keras.Sequential([
            keras.Input((None, 29)),
            layers.LSTM(150, recurrent_activation="hard_sigmoid", return_sequences=True, name="lstm_1"),
            layers.LSTM(128, recurrent_activation="hard_sigmoid", name="lstm_2"),
            layers.Dense(29, name="dense_1"),
            layers.Activation("softmax", name="activation_1"),
        ])
        model.load_weights(path)
        return model
    if path.name.startswith("gru_keras204"):
        # CATALOG.md: Keras 2.0.4 wrote no reset_after (it computed reset_after=False); tf_keras would assume True
        model = keras.Sequential([
            keras.Input((21, 1)),
            layers.GRU(64, recurrent_activation="hard_sigmoid", reset_after=False, return_sequences=True,
                       name="gru_2"),
            layers.TimeDistributed(layers.Dense(344), name="time_distributed_2"),
        ])
        model.load_weights(path)
        return model
    if path.name.startswith("textgenrnn"):
        with h5py.File(path, "r") as f:
            vocab, dim = f["embedding/embedding/embeddings:0"].shape
        model = keras.Sequential([
            keras.Input((None,)),
            layers.Embedding(vocab, dim, name="embedding"),
            layers.LSTM(128, return_sequences=True, name="rnn_1"),
            layers.LSTM(128, return_sequences=True, name="rnn_2"),
        ])
        model.load_weights(path, by_name=True)  # converts the CuDNNLSTM weights
        return model
    return keras.models.load_model(path, compile=False)


def main(generation: str, out_dir: Path, files: list[Path]) -> None:
    if generation == "keras3":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras

        def load(p: Path):  # type: ignore[no-untyped-def]
            return keras.saving.load_model(p, compile=False)
    else:
        load = _rebuilt_tf_keras
    for path in files:
        model = load(path)
        refs = {}
        for name, layer in lstm_directions(model).items():
            for role, w in zip(("kernel", "recurrent_kernel", "bias"), layer.get_weights()):
                refs[f"{name}:{role}"] = w
        np.savez(out_dir / f"{path.name}.ref.npz", **refs)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
