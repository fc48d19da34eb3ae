"""The exports' speed: onnxruntime on `export --to onnx` and the `export --to pytorch` module, against the
NumPy engine, on the benchmark shapes, in one run.

    python benchmarks/export_speed.py [--repeat 5]

Each shape (batch, steps, N_i, N_c) is a Keras 3 model Input -> LSTM(N_c) -> Dense(4), saved as .keras and
exported by lstm-inspect to both targets; all three run the same input (their outputs agree within 1e-5,
checked here). Prints median wall times and the ratios engine/runtime (above 1: the export is faster
than the engine). Threads as each library chooses by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from engine_speed import SHAPES, median_time  # same folder

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    import lstm_inspect
    from lstm_inspect.check.keras_ref import import_keras
    from lstm_inspect.export import export

    keras = import_keras("keras3")
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        import torch
    except ImportError:
        torch = None
    versions = (ort.__version__ if ort else "not installed", torch.__version__ if torch else "not installed")
    print(f"onnxruntime {versions[0]}, torch {versions[1]}; medians of {args.repeat}")
    print(f"  {'shape (B, T, N_i, N_c)':<24} {'engine s':>9} {'onnxrt s':>9} {'eng/ort':>8} {'torch s':>9} "
          f"{'eng/torch':>9}")
    tmp = Path(tempfile.mkdtemp(prefix="lstm-inspect-export-bench-"))
    for batch, steps, n_i, n_c in SHAPES:
        model = keras.Sequential([keras.Input((steps, n_i)), keras.layers.LSTM(n_c), keras.layers.Dense(4)])
        path = tmp / f"m_{n_c}.keras"
        model.save(path)
        ckpt = lstm_inspect.load(path)
        x = np.random.default_rng(0).standard_normal((batch, steps, n_i), dtype=np.float32)
        y = ckpt.forward(x)
        t_eng = median_time(lambda: ckpt.forward(x), args.repeat)  # noqa: B023
        line = f"  {(batch, steps, n_i, n_c)!s:<24} {t_eng:9.4f}"
        if ort is not None:
            onnx_path = tmp / f"m_{n_c}.onnx"
            export(ckpt, "onnx", onnx_path, xs=[x], force=True)
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            assert np.max(np.abs(session.run(None, {name: x})[0] - y)) < 1e-5
            t_ort = median_time(lambda: session.run(None, {name: x}), args.repeat)  # noqa: B023
            line += f" {t_ort:9.4f} {t_eng / t_ort:8.2f}"
        else:
            line += f" {'-':>9} {'-':>8}"
        if torch is not None:
            folder = tmp / f"m_{n_c}_torch"
            export(ckpt, "pytorch", folder, xs=[x], force=True)
            from lstm_inspect.export.torch.build import load

            _, module = load(folder)
            xt = torch.from_numpy(x)
            with torch.no_grad():
                out = module(xt)
                out = out[0] if isinstance(out, (list, tuple)) else out
                assert np.max(np.abs(out.numpy() - y)) < 1e-5

                def run_torch() -> None:
                    module(xt)  # noqa: B023

                t_torch = median_time(run_torch, args.repeat)
            line += f" {t_torch:9.4f} {t_eng / t_torch:9.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
