"""`show` on a checkpoint of over 500 MB, and peak memory of forward, stats and dump.

    python benchmarks/memory.py [--keep DIR]

Writes (with Keras 3, in a temporary folder; nothing is committed) a checkpoint of two stacked
LSTMs of 4096 units (about 870 MB) as a legacy .h5 and as a .keras, and a model with one
LSTM(1024) on 512 inputs. Prints:

- `show` wall time on the big files next to a 20 KB sample and `python -c "import tensorflow"`;
- peak RSS (/usr/bin/time -v) of `forward` on (64, 1000, 512, 1024) against
  input + output + 2 x weights + a fixed interpreter baseline;
- peak RSS of `stats` and `dump` on the big checkpoint against the largest layer's weights x 2
  + 200 MB.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from show_speed import user_env, wall  # same folder: the user's environment and the timing loop

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


def exe() -> str:
    return str(Path(sys.executable).with_name("lstm-inspect"))


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak resident MB, wall seconds) of one command, by /usr/bin/time -v."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=user_env())
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))  # type: ignore[union-attr]
    return kb / 1024, time.perf_counter() - t0


WRITE_MODELS = r"""
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras, numpy as np
out = sys.argv[1]
init = dict(kernel_initializer="random_normal", recurrent_initializer="random_normal")
big = keras.Sequential([keras.Input((10, 1024)), keras.layers.LSTM(4096, return_sequences=True, **init),
                        keras.layers.LSTM(4096, **init)])
big.save(f"{out}/big.h5")
big.save(f"{out}/big.keras")
long = keras.Sequential([keras.Input((1000, 512)), keras.layers.LSTM(1024, return_sequences=True, **init)])
long.save(f"{out}/long.keras")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="write the generated models here and keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="lstm-inspect-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "big.keras").exists():
        print("writing the big checkpoints with Keras 3 ...", flush=True)
        subprocess.run([sys.executable, "-c", WRITE_MODELS, str(folder)], check=True, env=user_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    small = ROOT / "sample_models" / "k3_stacked.keras"
    lstm = exe()

    print("\n1. show: wall time, median of 5 (fresh processes)")
    tf = wall([sys.executable, "-c", "import tensorflow"], runs=3)
    rows = [("python -c 'import tensorflow'", None, tf)]
    for f in (small, folder / "big.h5", folder / "big.keras"):
        rows.append((f"lstm-inspect show {f.name}", f.stat().st_size, wall([lstm, "show", str(f)])))
    for name, size, t in rows:
        size_s = f"{size / MB:8.1f} MB" if size is not None else " " * 11
        extra = f"   {tf / t:5.1f}x faster than importing TensorFlow" if size is not None else ""
        print(f"   {name:<36} {size_s} {t:7.3f} s{extra}")

    print("\n2. forward on (64, 1000, 512, 1024): peak RSS")
    x = np.random.default_rng(0).standard_normal((64, 1000, 512), dtype=np.float32)
    np.save(folder / "x.npy", x)
    base, _ = peak_rss([sys.executable, "-c", "import lstm_inspect.cli, lstm_inspect.engine.network, h5py, numpy"])
    peak, secs = peak_rss([lstm, "forward", str(folder / "long.keras"), "-i", str(folder / "x.npy"),
                           "-o", str(folder / "y.npy"), "--force"])
    weights = (512 + 1024) * 4096 * 4 + 4096 * 4
    out_bytes = 64 * 1000 * 1024 * 4
    budget = base + (x.nbytes + out_bytes + 2 * weights + 64 * 1024 * 4 * 64) / MB
    print(f"   interpreter + imports baseline {base:7.1f} MB")
    print(f"   input {x.nbytes / MB:.1f} MB, output {out_bytes / MB:.1f} MB, weights {weights / MB:.1f} MB")
    print(f"   peak RSS {peak:7.1f} MB   budget (baseline + input + output + 2 x weights + 64·batch·N_c) "
          f"{budget:7.1f} MB   {'OK' if peak <= budget else 'OVER'}   ({secs:.1f} s)")

    print("\n3. stats and dump on the big checkpoint: peak RSS")
    layer = (4096 + 4096) * 4 * 4096 * 4 + 4 * 4096 * 4
    budget = 2 * layer / MB + 200
    print(f"   largest layer's weights {layer / MB:.1f} MB; budget 2 x that + 200 MB = {budget:.1f} MB")
    for cmd in (["stats", str(folder / "big.h5"), "--json"],
                ["dump", str(folder / "big.h5"), "-o", str(folder / "dump_npz"), "--format", "npz", "--force"],
                ["dump", str(folder / "big.keras"), "-o", str(folder / "dump_pt"), "--layout", "pytorch",
                 "--format", "npz", "--force"]):
        peak, secs = peak_rss([lstm, *cmd])
        print(f"   lstm-inspect {' '.join(c if '/' not in c else Path(c).name for c in cmd):<58} peak RSS "
              f"{peak:7.1f} MB   {'OK' if peak <= budget else 'OVER'}   ({secs:.1f} s)")
    if args.keep is None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
