"""Write TensorFlow 2.15's GRU and SimpleRNN samples into sample_models/tf215/ (gru_*), in every form TF 2.15's
Keras writes: the 2.12-2.15 `.keras` zip, a legacy `.h5`, a SavedModel folder (`model.save(dir)`, traces left out
to keep it small), a TF weights checkpoint (`save_weights("NAME_ckpt/cp.ckpt")`) with `NAME.json`
(`model.to_json()`), and `NAME.io.npz` (the seeded input and `model.predict`'s output).

    python sample_models/generate_tf215_gru.py

It runs itself in generate_tf215.py's environment (`sample_models/.venv-tf215`, made by that script the first
time). The models: GRU reset_after=True and reset_after=False with hard_sigmoid, SimpleRNN relu; a
Bidirectional GRU (sum) and a Bidirectional RNN(GRUCell(reset_after=False)); Embedding(mask_zero) → GRU
(go_backwards) → LSTM; a GRU encoder-decoder handing its state over; a nested masked Sequential → TimeDistributed
→ Bidirectional GRU (ave) → SimpleRNN(go_backwards); LSTM and GRU without a bias. Nothing here is imported by
the package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "tf215"
VENV_PYTHON = HERE / ".venv-tf215" / "bin" / "python"
SEED = 2151


def main() -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf

    assert tf.__version__.startswith("2.15"), tf.__version__
    k, L = tf.keras, tf.keras.layers
    rng = np.random.default_rng(SEED)

    def save(name: str, model: object, x: object) -> None:
        for w in model.weights:
            w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
        base = OUT / name
        model.save(f"{base}_savedmodel", save_format="tf", save_traces=False)
        model.save_weights(f"{base}_ckpt/cp.ckpt")
        model.save(f"{base}.keras")
        model.save(f"{base}.h5")
        (OUT / f"{name}.json").write_text(model.to_json())
        xs = x if isinstance(x, list) else [x]
        y = model.predict(x, verbose=0)
        ys = y if isinstance(y, list) else [y]
        io = {("x" if len(xs) == 1 else f"x{i}"): a for i, a in enumerate(xs)}
        io.update({("y" if len(ys) == 1 else f"y{i}"): a for i, a in enumerate(ys)})
        np.savez(OUT / f"{name}.io.npz", **io)

    x = rng.normal(size=(3, 7, 4)).astype("float32")
    save("gru_stack", k.Sequential([
        L.Input((7, 4)), L.GRU(5, return_sequences=True),
        L.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True),
        L.SimpleRNN(2, activation="relu")]), x)
    save("gru_bidir_cells", k.Sequential([
        L.Input((7, 4)), L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum"),
        L.Bidirectional(L.RNN(L.GRUCell(2, reset_after=False))), L.Dense(2)]), x)
    ids = rng.integers(1, 20, (3, 9))
    ids[0, 6:] = 0
    ids[1, :3] = 0
    save("gru_embedding_lstm", k.Sequential([
        L.Input((9,), dtype="int32"), L.Embedding(20, 4, mask_zero=True),
        L.GRU(5, return_sequences=True, go_backwards=True), L.LSTM(3), L.Dense(1)]), ids)
    encoder_in, decoder_in = L.Input((6, 4)), L.Input((5, 3))
    _, state = L.GRU(4, return_state=True)(encoder_in)
    decoded = L.GRU(4, return_sequences=True)(decoder_in, initial_state=state)
    save("gru_seq2seq", k.Model([encoder_in, decoder_in], L.Dense(2)(decoded)),
         [rng.normal(size=(3, 6, 4)).astype("float32"), rng.normal(size=(3, 5, 3)).astype("float32")])
    masked = rng.normal(size=(3, 7, 4)).astype("float32")
    masked[0, 5:] = 0
    inner = k.Sequential([L.Input((7, 4)), L.Masking(0.0), L.LSTM(5, return_sequences=True)], name="inner")
    inp = L.Input((7, 4))
    h = L.TimeDistributed(L.Dense(3))(inner(inp))
    h = L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="ave")(h)
    save("gru_nested", k.Model(inp, L.SimpleRNN(3, go_backwards=True)(h)), masked)
    save("gru_no_bias", k.Sequential([L.Input((7, 4)), L.LSTM(6, use_bias=False, return_sequences=True),
                                      L.GRU(3, use_bias=False)]), x)


if __name__ == "__main__":
    if Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        if not VENV_PYTHON.exists():
            sys.exit("run sample_models/generate_tf215.py first: it makes sample_models/.venv-tf215")
        sys.exit(subprocess.run([str(VENV_PYTHON), __file__]).returncode)
    main()
