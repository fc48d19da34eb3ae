"""What the performance work changed, checked for what it computes and sets, never for how long it takes
(benchmarks/engine_speed.py and memory.py measure time)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.base import progress, threads
from lstm_inspect.check.stats import top_singular_value

from conftest import SAMPLES, run_cli


def test_small_products_run_on_one_thread_large_ones_on_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_cores", lambda: 2)
    assert threads.step_threads(1, 64, 256, free=2) == 1
    assert threads.step_threads(4, 512, 2048, free=2) == 1  # collapsed on two threads beside a busy neighbour
    assert threads.step_threads(32, 256, 1024, free=2) == 1
    assert threads.step_threads(64, 1024, 4096, free=2) is None
    assert threads.step_threads(64, 1024, 4096, free=1) == 1  # another process holds the other core
    # on eight cores with five held by others, a large product takes the three free ones, not all eight
    monkeypatch.setattr(threads, "_cores", lambda: 8)
    assert threads.step_threads(64, 1024, 4096, free=3) == 3
    assert threads.step_threads(64, 1024, 4096, free=8) is None
    assert threads.projection_threads(3200, 512, 4096, free=3) == 3
    assert threads.projection_threads(200, 32, 256, free=2) == 1
    assert threads.projection_threads(3200, 512, 4096, free=threads._cores()) is None
    assert threads.projection_threads(3200, 512, 4096, free=1) == 1


def test_a_busy_neighbour_is_seen() -> None:
    """A process spinning on a core shows among the runnable tasks of other processes."""
    import subprocess
    import sys
    import time

    if not Path("/proc/loadavg").exists():
        pytest.skip("no /proc/loadavg: the engine skips this check on this system")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert max(threads.others_running() for _ in range(20)) >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_forward_limits_blas_only_inside_its_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    seen: list[int | None] = []
    real = threads.limited

    def spy(n: int | None):  # type: ignore[no-untyped-def]
        seen.append(n)
        return real(n)

    monkeypatch.setattr(threads, "limited", spy)
    ckpt = lstm_inspect.load(SAMPLES / "k3_stacked.keras")
    with np.load(SAMPLES / "k3_stacked.io.npz") as d:
        y = ckpt.forward(d["x"])
        assert np.max(np.abs(y - d["y"])) <= 1e-5
    assert seen and set(seen) == {1}
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info()] == before


@pytest.mark.parametrize("shape", [(600, 600), (1000, 700), (500, 900)])
def test_lanczos_top_singular_value_equals_the_full_svd(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    a = (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
    expected = np.linalg.svd(a.astype(np.float64), compute_uv=False)[0]
    assert top_singular_value(a) == pytest.approx(expected, rel=1e-6)
    low_rank = np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1])).astype(np.float32)
    assert top_singular_value(low_rank) == pytest.approx(np.linalg.norm(low_rank.astype(np.float64), 2), rel=1e-6)
    assert top_singular_value(np.zeros(shape, np.float32)) == 0.0


def test_progress_reports_reach_a_listener_and_nothing_else() -> None:
    ckpt = lstm_inspect.load(SAMPLES / "k3_stacked.keras")
    x = np.random.default_rng(0).normal(size=(2, 30, ckpt.directions[0].input_dim)).astype(np.float32)
    ckpt.forward(x)  # no listener: nothing to report to, nothing drawn
    heard: list[tuple[str, float, float | None]] = []
    with progress.listening(lambda what, done, total: heard.append((what, done, total))):
        ckpt.forward(x)
    assert ("time steps", 0, 30) in heard


def test_the_progress_bar_draws_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from lstm_inspect import cli

    buffer = io.StringIO()
    monkeypatch.setattr(cli, "_console", lambda stderr=False: Console(file=buffer, force_terminal=True, width=80))
    monkeypatch.setattr(cli, "PROGRESS_AFTER", 0.0)
    with cli._progress_bar():
        progress.advance("directions drawn", 1, 4)
    assert "directions drawn" in buffer.getvalue()
    buffer.truncate(0)
    cli._QUIET.set(True)
    try:
        with cli._progress_bar():
            progress.advance("directions drawn", 1, 4)
    finally:
        cli._QUIET.set(False)
    assert buffer.getvalue() == ""


def test_quiet_is_accepted_and_nothing_but_the_result_is_printed() -> None:
    r = run_cli("stats", str(SAMPLES / "k3_single.keras"), "--quiet", "--json")
    assert r.returncode == 0 and r.stderr == ""


def test_the_lstm_step_with_one_tanh_computes_bit_for_bit_what_separate_activations_do() -> None:
    """Keras's default LSTM takes one tanh over its four blocks (σ(z) = (tanh(z/2) + 1)/2 with the σ columns halved
    beforehand, exact in binary); wrapping the same activations defeats that path, and the steps must agree."""
    from lstm_inspect.model.activations import sigmoid, tanh
    from lstm_inspect.model.cells.base import CellWeights
    from lstm_inspect.model.cells.lstm import LSTMStep

    def wrapped(fn):  # the same function, not the same object: the step takes the separate path
        return lambda z, out=None: fn(z, out=out)

    rng = np.random.default_rng(7)
    n_i, units, batch, steps = 6, 9, 4, 5
    for dtype in (np.float32, np.float64):
        w = CellWeights(kernel=rng.normal(size=(n_i, 4 * units)).astype(dtype),
                        recurrent_kernel=rng.normal(size=(units, 4 * units)).astype(dtype),
                        bias=rng.normal(size=4 * units).astype(dtype))
        xs = rng.normal(size=(steps, batch, n_i)).astype(dtype)
        fused = LSTMStep(w, dtype, batch, tanh, sigmoid, tanh)
        plain = LSTMStep(w, dtype, batch, wrapped(tanh), wrapped(sigmoid), wrapped(tanh))
        assert fused.fused and not plain.fused
        runs = []
        for step in (fused, plain):
            h, c = np.zeros((batch, units), dtype), np.zeros((batch, units), dtype)
            outs = []
            for x in xs:
                new = [np.empty_like(h), np.empty_like(c)]
                step(x @ step.kernel + step.input_bias, [h, c], new, None, 0)
                h, c = new
                outs.append(np.concatenate([h, c], axis=1))
            runs.append(np.stack(outs))
        assert np.abs(runs[1]).max() > 0.1  # a real computation
        assert np.array_equal(runs[0], runs[1]), float(np.abs(runs[0] - runs[1]).max())
