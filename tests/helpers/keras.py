"""Running Keras for the tests: each generation (Keras 3, tf_keras) in a subprocess of its own, once per pytest run
(shared by pytest-xdist's workers), and the strict xfail marks of the layer cases' known engine bugs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import fcntl
except ImportError:  # Windows: each worker then runs Keras in a folder of its own
    fcntl = None  # type: ignore[assignment]

from cases.layers import GENS, KNOWN_BUGS


def keras_once(tmp_path_factory: pytest.TempPathFactory, name: str, script: str, files: dict[str, bytes],
               gens: tuple[str, ...] = GENS) -> dict[str, Path]:
    """Run `python script GEN FOLDER` for each generation at once (FOLDER holds `files`), once per pytest run: the
    workers of pytest-xdist share the result through their common temporary folder, one waiting while another
    computes. Returns {generation: FOLDER/GEN.npz}, what the script wrote."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        root = root.parent  # the run's folder, above each worker's own
    digest = hashlib.sha256(script.encode() + b"".join(k.encode() + v for k, v in sorted(files.items())))
    folder = root / f"keras-{name}-{digest.hexdigest()[:16]}"
    outs = {gen: folder / f"{gen}.npz" for gen in gens}
    with open(f"{folder}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(p.exists() for p in outs.values()):
            folder.mkdir(exist_ok=True)
            for file, data in files.items():
                (folder / file).write_bytes(data)
            (folder / "make.py").write_text(script)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
            procs = {gen: subprocess.Popen([sys.executable, str(folder / "make.py"), gen, str(folder)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
                     for gen in gens}
            try:
                for gen, proc in procs.items():
                    _, err = proc.communicate(timeout=600)
                    assert proc.returncode == 0, f"{gen}: {err.decode()[-2000:]}"
            finally:
                for proc in procs.values():
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
    return outs


def known_bug(gen: str, case_id: str) -> list[Any]:
    """The xfail mark of a known engine bug (strict: the test fails once the bug is fixed, to drop the entry)."""
    bug = KNOWN_BUGS.get((gen, case_id))
    return [pytest.mark.xfail(reason=bug, strict=True, raises=AssertionError)] if bug else []
