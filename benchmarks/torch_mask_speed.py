"""The PyTorch export's masked recurrent layers: eager and TorchScript against Keras's step loop, in one run.

    python benchmarks/torch_mask_speed.py [MODEL] [--batch 32] [--steps 200] [--repeat 21] [--threads N]

MODEL (default sample_models/tfk_embedding_mask_zero_bilstm.h5; e.g. the real
sentiment_embed_maskzero_bilstm_tfkeras240.h5) is a model whose first layer is an Embedding with mask_zero. It
is exported with `export --to pytorch`; token ids of (batch, steps) get padding after, padding before, holes
(30 % of the steps) or none. Each is timed (median ms) three ways: eager (a layer torch.nn computes exactly runs
its fused op on the valid steps packed), the same module scripted (torch.jit.script), and eager with every
recurrent module's `fused` off (Keras's step loop, what torch.jit.trace and torch.export run). The three
outputs agree within 1e-5 (checked here).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def ids(rng: np.random.Generator, batch: int, steps: int, vocab: int, kind: str) -> np.ndarray:
    """Token ids in [1, vocab) with zeros (Embedding mask_zero's padding) as `kind` says."""
    x = rng.integers(1, vocab, (batch, steps))
    for row, n in enumerate(rng.integers(1, steps + 1, batch)):
        if kind == "after":
            x[row, n:] = 0
        elif kind == "before":
            x[row, :steps - n] = 0
        elif kind == "holes":
            x[row, rng.random(steps) < 0.3] = 0
    return x


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default=str(ROOT / "sample_models/tfk_embedding_mask_zero_bilstm.h5"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    import lstm_inspect
    from lstm_inspect.export import export
    from lstm_inspect.export.torch.build import load

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="lstm-inspect-torch-mask-bench-")) / "port"
    export(lstm_inspect.load(args.model), "pytorch", folder, force=True)
    module, model = load(folder)
    scripted = torch.jit.script(model)
    vocab = next(m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding))
    recurrent = [m for m in model.modules() if isinstance(m, module.KerasRNN) and m.fused]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {Path(args.model).name} "
          f"({len(recurrent)} fused recurrent modules); (batch, steps) = ({args.batch}, {args.steps}); "
          f"median ms of {args.repeat}")
    print(f"  {'padding':<8} {'eager':>8} {'script':>8} {'loop':>8} {'loop/eager':>10}")
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for kind in ("after", "before", "holes", "none"):
            x = torch.from_numpy(ids(rng, args.batch, args.steps, vocab, kind))
            y = model(x)
            t_eager = median_ms(lambda: model(x), args.repeat)  # noqa: B023
            assert (scripted(x) - y).abs().max() < 1e-5
            t_script = median_ms(lambda: scripted(x), args.repeat)  # noqa: B023
            for m in recurrent:
                m.fused = False
            assert (model(x) - y).abs().max() < 1e-5
            t_loop = median_ms(lambda: model(x), args.repeat)  # noqa: B023
            for m in recurrent:
                m.fused = True
            print(f"  {kind:<8} {t_eager:8.2f} {t_script:8.2f} {t_loop:8.2f} {t_loop / t_eager:10.1f}", flush=True)


if __name__ == "__main__":
    main()
