"""An export runtime (torch, onnxruntime) that is installed but fails to import, for the tests that run the CLI in a
subprocess with it: the export must then be written and reported not verified, never fail with exit 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lstm_inspect


def export_with_broken_runtime(tmp_path: Path, package: str, error: str, args: list[str]
                               ) -> subprocess.CompletedProcess[str]:
    """`lstm-inspect export ARGS` in a fresh Python where `package` is shadowed by one whose import raises `error`
    (a Python expression), with a dist-info that says it is installed, as a broken install looks."""
    shadow = tmp_path / "shadow"
    (shadow / package).mkdir(parents=True)
    (shadow / package / "__init__.py").write_text(f"raise {error}\n")
    (shadow / f"{package}-9.9.dist-info").mkdir()
    (shadow / f"{package}-9.9.dist-info" / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {package}\nVersion: 9.9\n")
    root = Path(lstm_inspect.__file__).parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{shadow}:{root}"}
    return subprocess.run([sys.executable, "-m", "lstm_inspect.cli", "export", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
