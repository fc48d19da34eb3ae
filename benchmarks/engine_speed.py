"""Engine speed against Keras and torch.nn.LSTM, on a quiet machine and beside a busy neighbour, in one run.

    python benchmarks/engine_speed.py [--repeat 5] [--quick]

For each shape (batch, steps, N_i, N_c) a Keras 3 model Input -> LSTM(N_c) is saved as .keras and
loaded by lstm-inspect. Every shape is timed twice: on a quiet machine, and with a neighbour (a
second process spinning on one core, started before and stopped after that half of the run, as on
a laptop or CI runner where something else runs). Each half prints the median wall time of:

- `ckpt.forward(x)` with the engine's own thread choice (lstm_inspect.base.threads) and with BLAS held to
  one thread for the whole call;
- torch.nn.LSTM (torch 2.13 CPU, when installed) with its default threads and with one thread;
- Keras 3's model.predict (quiet half only);

and the ratios torch/engine (above 1: the engine is faster). Then the per-step recurrent product on
one thread and on every core, quiet and busy (where BLAS threads start to pay, and where they
collapse), `diagnose` on real files, and the float32 matmul rate of this machine. Run it through
`make bench`, which unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this command only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = [(1, 200, 32, 64), (32, 100, 64, 256), (1, 1000, 128, 512), (64, 50, 512, 1024)]
ROOT = Path(__file__).resolve().parents[1]


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def neighbour(busy: bool) -> Iterator[None]:
    """A second process keeping one core busy for the duration of the block (nothing when not busy)."""
    if not busy:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def matmul_rate(repeat: int) -> float:
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / median_time(lambda: a @ b, repeat) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the two small shapes, no Keras timing")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, str(ROOT))
    from threadpoolctl import threadpool_info, threadpool_limits

    import lstm_inspect

    try:
        import torch
    except ImportError:
        torch = None
    from lstm_inspect.check.keras_ref import import_keras

    keras = import_keras("keras3")
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("num_threads")) for i in threadpool_info()
            if i.get("user_api") == "blas"]
    rate = matmul_rate(args.repeat)
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__}, BLAS {blas}; torch "
          f"{torch.__version__ if torch else 'not installed'} (default {torch.get_num_threads() if torch else '-'} "
          f"threads); OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print(f"float32 matmul rate (2048² @ 2048²): {rate:.1f} GFLOP/s; medians of {args.repeat}\n")
    shapes = SHAPES[:2] if args.quick else SHAPES
    tmp = Path(tempfile.mkdtemp(prefix="lstm-inspect-bench-"))
    cases = []
    for batch, steps, n_i, n_c in shapes:
        rng = np.random.default_rng(0)
        path = tmp / f"lstm_{batch}_{steps}_{n_i}_{n_c}.keras"
        model = keras.Sequential([keras.Input((steps, n_i)), keras.layers.LSTM(n_c)])
        model.save(path)
        x = rng.standard_normal((batch, steps, n_i), dtype=np.float32)
        ckpt = lstm_inspect.load(path)
        assert np.max(np.abs(ckpt.forward(x) - model.predict(x, verbose=0))) < 1e-4, "engine and Keras disagree"
        cases.append(((batch, steps, n_i, n_c), ckpt, x, model))

    default_threads = torch.get_num_threads() if torch else 1
    for busy in (False, True):
        print("with a busy neighbour (one core kept busy by another process)" if busy else "quiet machine")
        head = f"  {'shape (B, T, N_i, N_c)':<24} {'engine':>9} {'engine 1t':>9}"
        if torch:
            head += f" {'torch':>9} {'torch 1t':>9} {'torch/eng':>9} {'1t/1t':>7}"
        if not args.quick and not busy:
            head += f" {'keras':>9} {'keras/eng':>9}"
        print(head + "   (seconds)")
        with neighbour(busy):
            for shape, ckpt, x, model in cases:
                t_eng = median_time(lambda: ckpt.forward(x), args.repeat)  # noqa: B023
                with threadpool_limits(1, user_api="blas"):
                    t_eng1 = median_time(lambda: ckpt.forward(x), args.repeat)  # noqa: B023
                line = f"  {shape!s:<24} {t_eng:9.4f} {t_eng1:9.4f}"
                if torch:
                    lstm, xt = _torch_lstm(torch, ckpt), torch.from_numpy(x)

                    def run_torch() -> None:
                        with torch.no_grad():
                            lstm(xt)  # noqa: B023

                    torch.set_num_threads(default_threads)
                    t_torch = median_time(run_torch, args.repeat)
                    torch.set_num_threads(1)
                    t_torch1 = median_time(run_torch, args.repeat)
                    torch.set_num_threads(default_threads)
                    line += f" {t_torch:9.4f} {t_torch1:9.4f} {t_torch / t_eng:9.2f} {t_torch1 / t_eng1:7.2f}"
                if not args.quick and not busy:
                    t_keras = median_time(lambda: model.predict(x, batch_size=len(x), verbose=0),  # noqa: B023
                                          args.repeat)
                    line += f" {t_keras:9.4f} {t_keras / t_eng:9.2f}"
                print(line, flush=True)
        print()

    print("one recurrent step's product (B × N_c)·(N_c × 4·N_c), microseconds: where BLAS threads pay")
    print(f"  {'B':>4} {'N_c':>5} {'MFLOP':>7} {'1 thread':>9} {'all':>9} {'1t busy':>9} {'all busy':>9}  engine uses")
    from lstm_inspect.base.threads import step_threads

    for b, n in [(1, 64), (1, 512), (4, 512), (16, 512), (32, 256), (64, 512), (64, 1024)]:
        h = np.ones((b, n), np.float32)
        r = np.ones((n, 4 * n), np.float32) / n
        z = np.empty((b, 4 * n), np.float32)
        row = []
        for busy in (False, True):
            with neighbour(busy):
                for limit in (1, None):
                    with threadpool_limits(limit, user_api="blas") if limit else contextlib.nullcontext():
                        row.append(median_time(lambda: [np.matmul(h, r, out=z) for _ in range(20)],  # noqa: B023
                                               args.repeat) / 20 * 1e6)
        uses = "1 thread" if step_threads(b, n, 4 * n) == 1 else "all"
        print(f"  {b:>4} {n:>5} {2 * b * n * 4 * n / 1e6:7.1f} {row[0]:9.1f} {row[1]:9.1f} {row[2]:9.1f} "
              f"{row[3]:9.1f}  {uses}")
    _diagnose_times()


def _diagnose_times() -> None:
    """`diagnose` on real files (a port with the gate order wrong), wall time of the library call."""
    import lstm_inspect
    from lstm_inspect.check.diagnose import diagnose
    from lstm_inspect.engine.network import Network, default_inputs

    real = ROOT.parent / "shared" / "realworld"
    if not real.is_dir():
        return
    print("\ndiagnose on real files (THEIRS: the engine with i, f, c, o read as i, c, f, o), goal < 10 s:")
    from lstm_inspect.engine.network import DirectionVariant, Variant
    from lstm_inspect.model.cells.base import split_gates

    def wrong_order(d: Any, w: Any) -> Any:
        from lstm_inspect.model.cells.base import CellWeights

        def move(a: np.ndarray) -> np.ndarray:
            blocks = split_gates(a, d.cell.n_gates)
            return np.concatenate([blocks[0], blocks[2], blocks[1], *blocks[3:]], axis=-1)

        return CellWeights(kernel=move(w.kernel), recurrent_kernel=move(w.recurrent_kernel),
                           bias=None if w.bias is None else move(w.bias))

    for name in ("translation_seq2seq_keras224.h5", "emoji_bilstm_keras210.h5", "crypto_stacked_keras310.keras"):
        path = real / name
        if not path.exists():
            continue
        ckpt = lstm_inspect.load(path)
        net = Network(ckpt)
        xs = default_inputs(net)
        theirs = Network(ckpt, variant=Variant(((None, DirectionVariant(weights=(wrong_order,))),))).run(xs)
        t0 = time.perf_counter()
        result = diagnose(ckpt, xs, theirs)
        secs = time.perf_counter() - t0
        top = result.found[0].name if result.found else "nothing found"
        print(f"  {name:<40} {secs:6.2f} s  {result.tried} candidates  found: {top}")


def _torch_lstm(torch: Any, ckpt: Any) -> Any:
    from lstm_inspect.export.torch.cells import torch_cell

    d = ckpt.directions[0]
    w = d.weights()
    lstm = torch.nn.LSTM(w.input_dim, w.units, batch_first=True)
    arrays = torch_cell(d.cell).arrays(d.cell, w)
    state = {f"{k}_l0": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    lstm.load_state_dict(state)
    return lstm.eval()


if __name__ == "__main__":
    main()
