"""Nothing the user had is lost: failures midway and Ctrl-C leave old outputs intact and no debris."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lstm_inspect.cli import app
from lstm_inspect.io.arrays import MARKER

from conftest import SAMPLES

MODEL = SAMPLES / "k3_stacked.keras"


def _commands(tmp: Path) -> dict[str, tuple[list[str], Path]]:
    x = tmp / "x.npy"
    return {
        "forward": (["forward", str(MODEL), "-i", str(x), "-o", str(tmp / "out.npz")], tmp / "out.npz"),
        "trace": (["trace", str(MODEL), "-i", str(x), "-o", str(tmp / "out.npz")], tmp / "out.npz"),
        "trace-csv": (["trace", str(MODEL), "-i", str(x), "-o", str(tmp / "out"), "--format", "csv"], tmp / "out"),
        "dump": (["dump", str(MODEL), "-o", str(tmp / "out")], tmp / "out"),
        "plot": (["plot", str(MODEL), "-o", str(tmp / "out")], tmp / "out"),
    }


def _existing(target: Path) -> None:
    if target.suffix:
        target.write_bytes(b"precious")
    else:  # an earlier output of lstm-inspect (only those may be replaced), with a file of the user's
        target.mkdir()
        (target / MARKER).write_text("")
        (target / "mine.txt").write_text("precious")


def _intact(target: Path) -> bool:
    if target.suffix:
        return target.read_bytes() == b"precious"
    return (sorted(p.name for p in target.iterdir()) == [MARKER, "mine.txt"]
            and (target / "mine.txt").read_text() == "precious")


def _debris(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("."))


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, exc: BaseException, nth: int) -> None:
    """Every way the commands write a file goes through one of these; the nth call fails."""
    import zipfile as zf

    import matplotlib.figure

    calls = {"n": 0}

    def wrap(obj: Any, name: str) -> None:
        real = getattr(obj, name)

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == nth:
                raise exc
            return real(*args, **kwargs)

        monkeypatch.setattr(obj, name, failing)

    wrap(np, "save")
    wrap(np, "savez")
    wrap(np, "savetxt")
    wrap(np.lib.format, "write_array")
    wrap(matplotlib.figure.Figure, "savefig")
    wrap(zf.ZipFile, "writestr")


@pytest.mark.parametrize("command", ["forward", "trace", "trace-csv", "dump", "plot"])
@pytest.mark.parametrize("failure", ["disk full", "ctrl-c"])
def test_failure_midway_keeps_what_the_user_had(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
                                                failure: str) -> None:
    with np.load(SAMPLES / "k3_stacked.io.npz") as d:
        np.save(tmp_path / "x.npy", d["x"])
    argv, target = _commands(tmp_path)[command]
    _existing(target)
    exc: BaseException = OSError(errno.ENOSPC, "No space left on device") if failure == "disk full" \
        else KeyboardInterrupt()
    # forward and trace to .npz write one file: fail it; the folders fail on their third file
    _fail_on_write(monkeypatch, exc, nth=1 if command in ("forward", "trace") else 3)
    result = CliRunner().invoke(app, [*argv, "--force"])
    assert result.exit_code == (2 if failure == "disk full" else 130), result.stderr
    assert ("No space left" if failure == "disk full" else "interrupted") in result.stderr
    assert _intact(target) and _debris(tmp_path) == []


@pytest.mark.parametrize("command", ["forward", "dump"])
def test_a_folder_we_cannot_write_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """As if the output folder were read-only (root ignores permissions, so the refusal is injected)."""
    with np.load(SAMPLES / "k3_stacked.io.npz") as d:
        np.save(tmp_path / "x.npy", d["x"])
    argv, target = _commands(tmp_path)[command]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "Permission denied" in result.stderr and not target.exists()
