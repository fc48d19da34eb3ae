"""Shared paths and helpers for the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# TensorFlow's CPU kernels without oneDNN (its default on CPUs without AVX-512 VNNI or AMX) refuse channels_first
# convolutions: every Keras the tests run, in this process or a subprocess (which inherit this environment), runs
# with oneDNN on whatever the CPU, as verify's own import_keras does. A developer's own setting is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
REALWORLD = ROOT.parent / "shared" / "realworld"
GATES = ("i", "f", "c", "o")
CELL_GATES = {4: ("i", "f", "c", "o"), 3: ("z", "r", "h"), 1: ("h",)}  # by the number of fused blocks

CHECKPOINT_SUFFIXES = (".keras", ".h5", ".hdf5", ".h5py")
# Samples whose model holds a layer the engine does not run by itself (its LSTMs still run alone with --layer): the
# user's own layers (a custom class, a Lambda), which run whole only with the user's module (tests/test_user_layers.py
# runs them with sample_models/my_layers.py and checks the one-line refusal without it).
NOT_RUNNABLE: tuple[str, ...] = ("k3_user_", "tfk_user_")


def sample_checkpoints() -> list[Path]:
    """Every sample checkpoint that has Keras's own reference weights beside it."""
    return sorted(p for p in SAMPLES.iterdir()
                  if p.name.endswith(CHECKPOINT_SUFFIXES) and (SAMPLES / f"{stem(p)}.ref.npz").exists()
                  and not p.name.startswith(("k3_no_lstm", "k3_convlstm", "tfk_convlstm")))  # ConvLSTM: its own tests


def stem(p: Path) -> str:
    return p.name.split(".")[0]


def realworld_checkpoints(with_weights: bool = False) -> list[Path]:
    """The real files (the top folder and gru/; tf-formats/ is test_tf_formats's)."""
    if not REALWORLD.is_dir():
        return []
    files = sorted(p for folder in (REALWORLD, REALWORLD / "gru") if folder.is_dir() for p in folder.iterdir()
                   if p.name.endswith(CHECKPOINT_SUFFIXES))
    return [p for p in files if not _has_no_weights(p)] if with_weights else files


def keras_refs(npz: Path) -> dict[str, dict[str, np.ndarray]]:
    """'<direction>:<role>' arrays -> {direction: {role: array}}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(npz) as data:
        for key in data.files:
            name, role = key.rsplit(":", 1)
            out.setdefault(name, {})[role] = data[key]
    return out


def gate_names(ref: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The gates of a direction by its recurrent kernel's shape: LSTM i, f, c, o; GRU z, r, h; SimpleRNN h."""
    units, width = ref["recurrent_kernel"].shape
    return CELL_GATES[width // units]


def expected_gate(ref: dict[str, np.ndarray], g: str) -> tuple[np.ndarray, np.ndarray]:
    """W_g and b_g sliced straight from the arrays Keras reports (in the kind's stored gate order); for a GRU with
    reset_after, b_g is the input bias row."""
    units = ref["recurrent_kernel"].shape[0]
    k = gate_names(ref).index(g)
    cols = slice(k * units, (k + 1) * units)
    W = np.vstack([ref["kernel"][:, cols], ref["recurrent_kernel"][:, cols]]).T
    bias = ref.get("bias")
    if bias is None:
        return W, np.zeros(units, dtype=W.dtype)
    return W, (bias[0] if bias.ndim == 2 else bias)[cols]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("lstm-inspect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lstm_inspect.cli"]
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)


def show_json(path: Path) -> dict:
    r = run_cli("show", str(path), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="session")
def realworld_refs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Keras's own get_weights() for every real-world file, from the Keras generation that wrote it."""
    files = realworld_checkpoints(with_weights=True)
    if not files:
        pytest.skip("../shared/realworld is not beside this clone")
    catalog = {e["file"]: e for e in json.loads((REALWORLD / "catalog.json").read_text())}
    out_dir = tmp_path_factory.mktemp("keras_refs")
    by_generation: dict[str, list[str]] = {"keras3": [], "tf_keras": []}
    for f in files:
        entry = catalog.get(str(f.relative_to(REALWORLD)), {})
        by_generation["keras3" if str(entry.get("keras_version", "")).startswith("3") else "tf_keras"].append(str(f))
    for generation, paths in by_generation.items():
        if paths:
            script = str(ROOT / "tests" / "keras_reference.py")
            subprocess.run([sys.executable, script, generation, str(out_dir), *paths],
                           check=True, capture_output=True, timeout=900)
    return {p.name[: -len(".ref.npz")]: keras_refs(p) for p in out_dir.glob("*.ref.npz")}


def _has_no_weights(path: Path) -> bool:
    """True for a legacy file saved before its model was built (every weight_names empty)."""
    import h5py

    if not path.name.endswith((".h5", ".hdf5", ".h5py")):
        return False
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        return all(len(np.atleast_1d(g.attrs.get("weight_names", []))) == 0
                   for g in root.values() if isinstance(g, h5py.Group))


# hostile cases per command and per mutation family, gathered from pytest-xdist's workers
_FUZZ_TOTALS: dict[str, dict[str, int]] = {"fuzz_cases": {}, "fuzz_families": {}}


def pytest_sessionfinish(session: Any) -> None:
    """On a pytest-xdist worker: hand the fuzz counts to the controller."""
    fuzz = sys.modules.get("test_fuzz")
    if hasattr(session.config, "workeroutput") and fuzz is not None and getattr(fuzz, "CASES", None):
        session.config.workeroutput["fuzz_cases"] = json.dumps(dict(fuzz.CASES))
        session.config.workeroutput["fuzz_families"] = json.dumps(dict(getattr(fuzz, "FAMILIES", {})))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the pytest-xdist controller: add up the workers' fuzz counts."""
    for key, totals in _FUZZ_TOTALS.items():
        for name, n in json.loads(getattr(node, "workeroutput", {}).get(key, "{}")).items():
            totals[name] = totals.get(name, 0) + n


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many hostile cases the fuzz suite ran per command and per family (tests/test_fuzz.py), over every
    worker."""
    fuzz = sys.modules.get("test_fuzz")
    ran = fuzz is not None and getattr(fuzz, "CASES", None)
    counts = _FUZZ_TOTALS["fuzz_cases"] or (dict(fuzz.CASES) if ran else {})
    families = _FUZZ_TOTALS["fuzz_families"] or (dict(getattr(fuzz, "FAMILIES", {})) if ran else {})
    if counts:
        text = ", ".join(f"{cmd} {n}" for cmd, n in sorted(counts.items()))
        terminalreporter.write_line(f"fuzz: hostile cases per command: {text}; total {sum(counts.values())}")
    if families:
        text = ", ".join(f"{kind} {n}" for kind, n in sorted(families.items()))
        terminalreporter.write_line(f"fuzz: cases per family: {text}")


def patch_zip_member(path: Path, member: str, flag: int | None = None, method: int | None = None) -> None:
    """Set bits of a zip member's general-purpose flag (1: encrypted) or its compression method, in both of its
    headers (the fuzz suite and the hostile-file tests)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(member).header_offset
    offsets = [(local + 6, local + 8)]  # local header: flag at 6, method at 8
    at = data.find(b"PK\x01\x02")
    while at != -1:  # central directory: flag at 8, method at 10, name length at 28, name at 46
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len] == member.encode():
            offsets.append((at + 8, at + 10))
        at = data.find(b"PK\x01\x02", at + 4)
    for flag_at, method_at in offsets:
        if flag is not None:
            old = int.from_bytes(data[flag_at:flag_at + 2], "little")
            data[flag_at:flag_at + 2] = (old | flag).to_bytes(2, "little")
        if method is not None:
            data[method_at:method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
