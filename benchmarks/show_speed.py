"""Wall time of `lstm-inspect show` next to `python -c "import tensorflow"`, measured in one run.

    python benchmarks/show_speed.py [FILE ...]

Defaults to the largest sample model, the largest real-world file, and the real SavedModel folder
and two-shard TF checkpoint (read with lstm-inspect's own tensor-bundle reader, no TensorFlow).
Prints the median of several runs of each command (fresh processes, as a user types them) and the
ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5


def user_env() -> dict[str, str]:
    # This workplace sets these to work around old OpenBLAS builds; a user's machine has neither.
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def wall(cmd: list[str], runs: int = RUNS) -> float:
    """Median wall time of `runs` fresh runs of a command, in a user's environment."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=user_env())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(files: list[Path]) -> None:
    exe = str(Path(sys.executable).with_name("lstm-inspect"))
    if not files:
        samples = [p for p in (ROOT / "sample_models").iterdir() if p.suffix in (".keras", ".h5")]
        files = [max(samples, key=lambda p: p.stat().st_size)]
        real = ROOT.parent / "shared" / "realworld"
        if real.is_dir():
            checkpoints = [p for p in real.iterdir() if p.is_file() and not p.name.endswith((".npz", ".md", ".json"))]
            files.append(max(checkpoints, key=lambda p: p.stat().st_size))
            files += [p for p in (real / "tf-formats" / "lstm_savedmodel_tf215",
                                  real / "tf-formats" / "bilstm_tfckpt_two_shards") if p.exists()]
    tf = wall([sys.executable, "-c", "import tensorflow"])
    print(f"python -c 'import tensorflow'        {tf:6.3f} s  (median of {RUNS})")
    for f in files:
        t = wall([exe, "show", str(f)])
        size = sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) if f.is_dir() else f.stat().st_size
        print(f"lstm-inspect show {f.name:<20} {t:6.3f} s  ({size / 1e6:.2f} MB; "
              f"{tf / t:.1f}x faster than importing TensorFlow)")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
