"""Reading user inputs and writing results: arrays in and out, never pickles, never half-written files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from lstm_inspect.errors import InspectError


def read_inputs(path: Path) -> dict[str, np.ndarray]:
    """`.npy` (one array), `.npz` (one array per model input) or `.csv` (one 2-D sequence, batch of 1).

    Returned in file order; `.npz` keys are kept so inputs can be matched by name.
    """
    if not path.exists():
        raise InspectError(f"{path}: no such file")
    if path.is_dir():
        raise InspectError(f"{path}: is a directory, not an input file (.npy, .npz, .csv)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            if not arrays:
                raise InspectError(f"{path}: holds no arrays")
            return arrays
        if suffix == ".csv":
            seq = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
            return {"x": seq[None]}
    except InspectError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InspectError(f"{path}: holds pickled objects, which lstm-inspect never loads") from None
        raise InspectError(f"{path}: is not a readable {suffix} file ({str(exc).splitlines()[0][:150]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InspectError(f"{path}: is not a readable {suffix} file ({str(exc).splitlines()[0][:150]})") from None
    raise InspectError(f"{path}: inputs must be .npy, .npz or .csv, not {suffix or 'a file without extension'}")


def ordered_inputs(arrays: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    """Match arrays to the model's inputs: by input name when every name is there, else in file order."""
    if len(arrays) > 1 and all(n in arrays for n in names):
        return [arrays[n] for n in names]
    return list(arrays.values())


@contextmanager
def atomic_path(target: Path, force: bool) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it only when the block succeeds.

    Refuses to replace an existing file unless `force`; on any failure the temporary file is
    removed and whatever was at `target` is left as it was.
    """
    if target.exists() and not force:
        raise InspectError(f"{target}: already exists; pass --force to replace it")
    if target.exists() and target.is_dir():
        raise InspectError(f"{target}: is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InspectError(f"{parent}: no such directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=parent)
    except OSError as exc:
        raise InspectError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        raise InspectError(f"{target}: could not be written ({exc.strerror or exc}); nothing was changed") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_arrays(target: Path, arrays: dict[str, np.ndarray], force: bool) -> None:
    """One array to `.npy`, or named arrays to `.npz`, atomically."""
    suffix = target.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise InspectError(f"{target}: outputs are written as .npy (one array) or .npz")
    if suffix == ".npy" and len(arrays) != 1:
        raise InspectError(f"{target}: the model gives {len(arrays)} outputs; write them to a .npz")
    with atomic_path(target, force) as tmp:
        with open(tmp, "wb") as f:
            if suffix == ".npy":
                np.save(f, next(iter(arrays.values())), allow_pickle=False)
            else:
                np.savez(f, **arrays)


TRACE_QUANTITIES = ("z", "i", "f", "c_tilde", "o", "c", "h")


@contextmanager
def atomic_dir(target: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside `target`, renamed onto it only when the block succeeds.

    An existing `target` is refused unless `force`; then it is moved aside, replaced, and removed
    only once the new folder is in place. On any failure nothing the user had is touched.
    """
    if target.exists() and not force:
        raise InspectError(f"{target}: already exists; pass --force to replace it")
    if target.exists() and not target.is_dir():
        raise InspectError(f"{target}: exists and is not a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InspectError(f"{parent}: no such directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise InspectError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    try:
        yield tmp
        _swap_into_place(tmp, target)
    except OSError as exc:
        raise InspectError(f"{target}: could not be written ({exc.strerror or exc}); nothing was changed") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(tmp: Path, target: Path) -> None:
    backup = None
    if target.exists():
        backup = target.parent / f".{target.name}.replaced"
        if backup.exists():
            shutil.rmtree(backup)
        os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except OSError:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


TRACE_QUANTITIES = ("z", "i", "f", "c_tilde", "o", "c", "h")


def write_trace(target: Path, traces: dict[str, dict[str, np.ndarray]], fmt: str, force: bool) -> list[str]:
    """Per-step golden values: `{direction: {quantity: (batch, steps, n)}}` to one .npz or a folder of CSVs.

    npz keys are `<direction>/<quantity>`. A CSV folder holds `<direction>/<quantity>.csv` with
    columns sample, step, then one per unit, and a manifest.json. Returns what was written.
    """
    if fmt == "npz":
        flat = {f"{d}/{q}": a for d, qs in traces.items() for q, a in qs.items()}
        write_arrays(target if target.suffix == ".npz" else target.with_suffix(".npz"), flat, force)
        return sorted(flat)
    written = []
    with atomic_dir(target, force) as tmp:
        manifest: dict[str, dict[str, object]] = {}
        for direction, quantities in traces.items():
            folder = tmp / direction
            folder.mkdir(parents=True, exist_ok=True)
            for q, a in quantities.items():
                batch, steps, width = a.shape
                sample, step = np.meshgrid(np.arange(batch), np.arange(steps), indexing="ij")
                table = np.column_stack([sample.reshape(-1), step.reshape(-1), a.reshape(batch * steps, width)])
                prefix = "z" if q == "z" else "u"
                header = "sample,step," + ",".join(f"{prefix}{k}" for k in range(width))
                fmt_cols = ["%d", "%d"] + ["%.9g"] * width
                np.savetxt(folder / f"{q}.csv", table, delimiter=",", header=header, comments="", fmt=fmt_cols)
                rel = f"{direction}/{q}.csv"
                manifest[rel] = {"direction": direction, "quantity": q, "batch": batch, "steps": steps,
                                 "columns": width}
                written.append(rel)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return written
