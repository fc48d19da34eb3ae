"""Write the TensorFlow 2.15 samples in sample_models/tf215/ with TF 2.15's own Keras (tf.keras 2.15).

    python sample_models/generate_tf215.py              # TF 2.15 -> tf215/ (every format below)
    python sample_models/generate_tf215.py --tf 2.13    # TF 2.13 -> tf213/ (only the .keras zips)

TF 2.15 is the last TensorFlow whose `tf.keras` is Keras 2; it writes the formats no later Keras
writes: SavedModel folders (`model.save(dir)`), TF-format weight checkpoints
(`save_weights("dir/cp.ckpt")`: `cp.ckpt.index`, `cp.ckpt.data-00000-of-00001`, `checkpoint`)
and the 2.12-2.15 `.keras` zip. It needs its own environment, so this script makes one the first
time, `sample_models/.venv-tf215` (tensorflow-cpu 2.15.1 with numpy < 2; about 600 MB; keep it
out of git), and runs itself again inside it.

For every model NAME it writes, into tf215/:

- ``NAME_savedmodel/``: ``model.save(dir, save_format="tf")`` (keras_metadata.pb, saved_model.pb,
  variables/variables.{index,data-00000-of-00001}; traces left out to keep it small);
- ``NAME_ckpt/``: ``model.save_weights("NAME_ckpt/cp.ckpt")`` (with the ``checkpoint`` file);
- ``NAME.keras``: ``model.save("NAME.keras")`` (the 2.12-2.15 zip layout);
- ``NAME.json``: ``model.to_json()``;
- ``NAME.io.npz`` and ``NAME.ref.npz``: the seeded input with ``model.predict``'s output, and
  ``get_weights()`` of every LSTM direction keyed ``<layer path>:kernel|recurrent_kernel|bias``,
  the keying of ``generate.py`` (Bidirectional halves are ``<bidir name>/<forward_layer.name>``).

One model is trained for a step with the Keras 2.11+ optimizer (its state sits under
``optimizer/_variables/N``) and one with the legacy optimizer (per-variable ``.OPTIMIZER_SLOT``
slots), so the checkpoints hold optimizer state the way trained ones do. Nothing here is
imported by the package.

``--tf 2.13`` builds the same four models with the same seeds in TF 2.13.1's tf.keras (its own
environment, ``sample_models/.venv-tf213``: tensorflow-cpu 2.13.1 with numpy < 2; keep it out of
git too) and writes into tf213/ only ``NAME.keras``, ``NAME.io.npz`` and ``NAME.ref.npz``. Keras
2.12-2.14 walked the model with plain ``dir()`` order, so those zips' ``model.weights.h5`` is rooted
at ``_layer_checkpoint_dependencies/`` instead of ``layers/``, and every layer with weights takes two
counter values (``lstm``, ``lstm_2``, ``dense``): the layout the reader's ``tf_keras_paths`` handles.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 2150  # the same for every TensorFlow version, so the inputs and weights match across them

# Per TensorFlow version: output folder, venv, pip requirements, and whether to write the
# SavedModel / TF checkpoint / to_json files (2.15) or only the .keras zips (2.13).
TARGETS: dict[str, dict[str, Any]] = {
    "2.15": {"out": "tf215", "venv": ".venv-tf215", "all_formats": True,
             "requirements": ["tensorflow-cpu==2.15.1", "numpy<2"]},
    # TF 2.13.1 itself pins numpy<=1.24.3 and typing-extensions<4.6; pip resolves those.
    "2.13": {"out": "tf213", "venv": ".venv-tf213", "all_formats": False,
             "requirements": ["tensorflow-cpu==2.13.1", "numpy<2"]},
}
TF_VERSION = "2.15"
OUT = HERE / TARGETS[TF_VERSION]["out"]
VENV = HERE / TARGETS[TF_VERSION]["venv"]
REQUIREMENTS: list[str] = TARGETS[TF_VERSION]["requirements"]


def _select(tf_version: str) -> None:
    """Point OUT, VENV and REQUIREMENTS at one entry of TARGETS."""
    global TF_VERSION, OUT, VENV, REQUIREMENTS
    target = TARGETS[tf_version]
    TF_VERSION = tf_version
    OUT = HERE / target["out"]
    VENV = HERE / target["venv"]
    REQUIREMENTS = target["requirements"]



def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _ensure_venv() -> None:
    if _venv_python().exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(_venv_python()), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True)


def _save_refs(name: str, model: Any, x: Any) -> None:
    """NAME.ref.npz (get_weights per LSTM direction) and NAME.io.npz (input, Keras output)."""
    from generate import lstm_directions  # the samples' keying, shared with generate.py

    refs: dict[str, np.ndarray] = {}
    for path, layer in lstm_directions(model).items():
        for role, w in zip(("kernel", "recurrent_kernel", "bias"), layer.get_weights(), strict=True):
            refs[f"{path}:{role}"] = w
    np.savez(OUT / f"{name}.ref.npz", **refs)
    y = model.predict(x, verbose=0)
    io: dict[str, np.ndarray] = {}
    if isinstance(x, (list, tuple)):
        io.update({f"x{k}": v for k, v in enumerate(x)})
    else:
        io["x"] = x
    if isinstance(y, (list, tuple)):
        io.update({f"y{k}": np.asarray(v) for k, v in enumerate(y)})
    else:
        io["y"] = np.asarray(y)
    np.savez(OUT / f"{name}.io.npz", **io)


def generate() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(HERE))
    import tensorflow as tf

    from generate import padded_ids, random_weights, seq_input

    if not tf.__version__.startswith(f"{TF_VERSION}."):
        raise SystemExit(f"needs TensorFlow {TF_VERSION}, found {tf.__version__}")
    all_formats = TARGETS[TF_VERSION]["all_formats"]
    keras = tf.keras
    layers = keras.layers
    rng = np.random.default_rng(SEED)

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()

    def save(name: str, model: Any, x: Any, y_train: Any = None, optimizer: Any = None) -> None:
        keras.utils.set_random_seed(SEED)
        random_weights(model, rng)
        if optimizer is not None:
            model.compile(optimizer=optimizer, loss="mse")
            model.train_on_batch(x, y_train)  # one step: the checkpoint now holds optimizer state
        if all_formats:
            model.save(OUT / f"{name}_savedmodel", save_format="tf", save_traces=False)
            model.save_weights(str(OUT / f"{name}_ckpt" / "cp.ckpt"))
        model.save(OUT / f"{name}.keras")
        if all_formats:
            (OUT / f"{name}.json").write_text(model.to_json())
        _save_refs(name, model, x)

    T, F = 7, 3
    x = seq_input(rng, 4, T, F)
    save("single", keras.Sequential([keras.Input((T, F)), layers.LSTM(5)]), x)

    model = keras.Sequential([
        keras.Input((T, F)),
        layers.Bidirectional(layers.LSTM(4, return_sequences=True, recurrent_activation="hard_sigmoid"),
                             merge_mode="concat"),
        layers.LSTM(3, recurrent_activation="hard_sigmoid"),
        layers.Dense(2),
    ])
    save("bidir_stacked", model, x, y_train=np.zeros((4, 2), "float32"),
         optimizer=keras.optimizers.Adam(1e-3))

    ids = padded_ids(rng, 5, 9, 20)
    model = keras.Sequential([
        keras.Input((9,), dtype="int32"),
        layers.Embedding(20, 6, mask_zero=True),
        layers.LSTM(5, go_backwards=True),
        layers.Dense(3),
    ])
    save("embedding_backwards", model, ids, y_train=np.zeros((5, 3), "float32"),
         optimizer=keras.optimizers.legacy.Adam(1e-3))

    enc_in = keras.Input((6, 4), name="encoder_input")
    dec_in = keras.Input((5, 3), name="decoder_input")
    _, h, c = layers.LSTM(6, return_state=True, name="encoder")(enc_in)
    seq = layers.LSTM(6, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    out = layers.Dense(3, activation="softmax", name="next")(seq)
    save("seq2seq", keras.Model([enc_in, dec_in], out), [seq_input(rng, 4, 6, 4), seq_input(rng, 4, 5, 3)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf", choices=sorted(TARGETS), default="2.15",
                        help="TensorFlow version to write with (default 2.15 -> tf215/; 2.13 -> tf213/)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _select(args.tf)
    if args.inside:
        generate()
        return
    _ensure_venv()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([str(_venv_python()), __file__, "--inside", "--tf", args.tf], check=True, env=env)
    files = [p for p in OUT.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    print(f"{OUT.name}: wrote {len(files)} files, {total / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    main()
