"""Engine throughput against Keras (and torch.nn.LSTM when installed), measured in one run.

    python benchmarks/engine_speed.py [--repeat 5] [--quick]

For each shape (batch, steps, N_i, N_c) a Keras 3 model Input -> LSTM(N_c) is built with random
weights and saved as .keras; lstm-inspect loads that file and both run the same input. Prints
the median wall time of each, the ratio Keras / engine (above 1: the engine is faster), the
engine's GFLOP/s, and that as a fraction of this machine's float32 matmul rate measured in the
same run (a large square np.matmul). Run it through `make bench`, which unsets OPENBLAS_CORETYPE
and OPENBLAS_L2_SIZE for this command only (this workplace sets them; users' machines do not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = [(1, 200, 32, 64), (32, 100, 64, 256), (64, 50, 512, 1024), (1, 1000, 128, 512)]


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up (graph tracing, caches)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(repeat: int) -> float:
    """float32 GFLOP/s of a large square matmul: the ceiling an LSTM's matmuls can reach here."""
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = median_time(lambda: a @ b, repeat)
    return 2 * n**3 / t / 1e9


def lstm_flops(batch: int, steps: int, n_i: int, n_c: int) -> float:
    # x·kernel and h·recurrent_kernel per step, 2 flops per multiply-add; the gate arithmetic is O(B·N_c)
    return 2.0 * batch * steps * (n_i + n_c) * 4 * n_c


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the two small shapes")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import lstm_inspect
    from lstm_inspect.keras_ref import import_keras

    keras = import_keras("keras3")
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None

    from threadpoolctl import threadpool_info

    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()
            if i.get("user_api") == "blas"]
    rate = matmul_rate(args.repeat)
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__} BLAS {blas}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print(f"float32 matmul rate (2048² @ 2048²): {rate:.1f} GFLOP/s\n")
    header = (f"{'shape (B, T, N_i, N_c)':<24} {'keras s':>9} {'engine s':>9} {'keras/engine':>12} "
              f"{'engine GFLOP/s':>14} {'of matmul':>9}" + (f" {'torch s':>9} {'torch/engine':>12}" if torch else ""))
    print(header)
    shapes = SHAPES[:2] if args.quick else SHAPES
    breakdown: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch, steps, n_i, n_c in shapes:
            rng = np.random.default_rng(0)
            model = keras.Sequential([keras.Input((steps, n_i)), keras.layers.LSTM(
                n_c, kernel_initializer="glorot_uniform", recurrent_initializer="glorot_uniform")])
            path = Path(tmp) / f"lstm_{n_c}.keras"
            model.save(path)
            x = rng.standard_normal((batch, steps, n_i), dtype=np.float32)
            ckpt = lstm_inspect.load(path)
            ours = ckpt.forward(x)
            theirs = model.predict(x, batch_size=batch, verbose=0)
            assert np.max(np.abs(ours - theirs)) < 1e-4, "engine and Keras disagree"
            t_keras = median_time(lambda: model.predict(x, batch_size=batch, verbose=0), args.repeat)
            t_engine = median_time(lambda: ckpt.forward(x), args.repeat)
            gflops = lstm_flops(batch, steps, n_i, n_c) / t_engine / 1e9
            line = (f"{(batch, steps, n_i, n_c)!s:<24} {t_keras:9.4f} {t_engine:9.4f} {t_keras / t_engine:12.2f} "
                    f"{gflops:14.1f} {gflops / rate:9.2f}")
            if torch is not None:
                lstm = _torch_lstm(torch, ckpt, n_i, n_c)
                xt = torch.from_numpy(x)

                def run_torch() -> None:
                    with torch.no_grad():
                        lstm(xt)

                t_torch = median_time(run_torch, args.repeat)
                line += f" {t_torch:9.4f} {t_torch / t_engine:12.2f}"
            print(line, flush=True)
            if (batch, steps, n_i, n_c) == (64, 50, 512, 1024):
                breakdown.append(_where_time_goes(ckpt, x, args.repeat, t_engine, rate))
    for text in breakdown:
        print(text)


def _where_time_goes(ckpt: Any, x: np.ndarray, repeat: int, total: float, rate: float) -> str:
    """The engine's two matrix products timed alone at the same shapes; the rest is gate arithmetic."""
    w = ckpt.layers[0].weights()
    batch, steps, n_i = x.shape
    n_c = w.units
    h = np.zeros((batch, n_c), np.float32)
    z = np.empty((batch, 4 * n_c), np.float32)
    flat = np.ascontiguousarray(x.reshape(-1, n_i))

    def recurrence() -> None:
        for _ in range(steps):
            np.matmul(h, w.recurrent_kernel, out=z)

    t_proj = median_time(lambda: flat @ w.kernel, repeat)
    t_rec = median_time(recurrence, repeat)
    rest = max(total - t_proj - t_rec, 0.0)
    f_proj, f_rec = 2.0 * batch * steps * n_i * 4 * n_c, 2.0 * batch * steps * n_c * 4 * n_c
    return (f"\nwhere the engine's time goes on (64, 50, 512, 1024), total {total:.3f} s:\n"
            f"  input projection, one ({batch * steps}×{n_i})·({n_i}×{4 * n_c}) matmul: {t_proj:.3f} s "
            f"({f_proj / t_proj / 1e9:.0f} GFLOP/s, {f_proj / t_proj / 1e9 / rate:.2f} of the square-matmul rate)\n"
            f"  recurrence, {steps} × ({batch}×{n_c})·({n_c}×{4 * n_c}) matmuls: {t_rec:.3f} s "
            f"({f_rec / t_rec / 1e9:.0f} GFLOP/s, {f_rec / t_rec / 1e9 / rate:.2f} of it)\n"
            f"  gate arithmetic and the rest: {rest:.3f} s ({rest / total:.0%})")


def _torch_lstm(torch: Any, ckpt: Any, n_i: int, n_c: int) -> Any:
    from lstm_inspect.export import pytorch_arrays

    lstm = torch.nn.LSTM(n_i, n_c, batch_first=True)
    state = pytorch_arrays(ckpt.layers[0].weights(), "")
    lstm.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    return lstm.eval()


if __name__ == "__main__":
    main()
