"""Reading user inputs and writing results: arrays in and out, never pickles, never half-written files,
never a path outside what the user asked.

Names that come from a checkpoint (layer names) never become paths as they are: `safe_part`
escapes each one with a documented, reversible scheme, and every path is checked to lie inside the
output before anything is written. `--force` replaces only what lstm-inspect wrote itself (a
folder holding its marker file), never the input or a folder holding it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

import numpy as np

from lstm_inspect.base.errors import InspectError

# An input .npz may not inflate past this many times its size on disk, nor past this many bytes.
MAX_INPUT_INFLATION, MAX_INPUT_BYTES = 200, 4 << 30
# Every folder lstm-inspect writes holds this file; --force replaces only such folders.
MARKER = ".lstm-inspect-output"
SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_PART_BYTES = 200  # file systems allow 255 bytes per name; room for suffixes
# Names on a terminal or in a picture are cut to about this many characters, and any one printed text to
# LINE_CHARS (see `shorten`); Keras's own names are far shorter.
NAME_CHARS, LINE_CHARS = 100, 1000
# What `printable` escapes: control (newlines and tabs too), format, surrogate, private-use and unassigned
# characters, line and paragraph separators.
HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def safe_part(name: str) -> str:
    """One name from a checkpoint as one file or folder name, reversibly.

    Every character outside [A-Za-z0-9._-] becomes %XX for each byte of its UTF-8 form (so `/`,
    `\\`, `%`, spaces, control characters cannot reach the file system), a leading `.` becomes %2E
    (no hidden files, no `.` or `..`), and the empty name is `%`. `urllib.parse.unquote` gives the
    name back. A name whose escaped form is longer than 200 bytes keeps its first 150 bytes and ends
    in `~` and 16 hex digits of its SHA-256; the manifest keeps every original name.
    """
    if name == "":
        return "%"
    out = "".join(ch if ch in SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in name)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if len(out) > MAX_PART_BYTES:
        out = f"{out[:150]}~{hashlib.sha256(name.encode('utf-8')).hexdigest()[:16]}"
    return out


def printable(text: object) -> str:
    r"""Text from a file or a path, safe for a terminal or a picture: every control, format and line- or
    paragraph-separator character shown as an escape (\x0a for a newline, \x09 for a tab, \x1b, \x85,
    \u2028, \u202e), so a name can never start a line of its own or move the cursor; everything else as it is."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) not in HIDDEN:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def shorten(text: object, limit: int = NAME_CHARS) -> str:
    """Text as it is when it has at most `limit` characters; else its start and its end around
    "…(N characters cut)…", about `limit` characters in all. Every name from a file that reaches a terminal line, a
    table, a plot title or an axis goes through this (with NAME_CHARS), and every line printed (with
    LINE_CHARS): a 400,000-character layer name costs neither minutes of text layout nor a screenful per
    line. `--json` and the manifests keep names whole."""
    s = str(text)
    if len(s) <= limit:
        return s
    keep = max(limit - 28, 8)  # room for the marker
    head = keep * 2 // 3
    tail = keep - head
    return f"{s[:head]}…({len(s) - head - tail:,} characters cut)…{s[len(s) - tail:]}"


def shown(text: object, limit: int = NAME_CHARS) -> str:
    """A name from a file as it is printed or drawn: shortened (`shorten`), then made `printable`."""
    return printable(shorten(text, limit))


def original_part(part: str) -> str:
    """The name `safe_part` escaped (for names that were not shortened)."""
    return "" if part == "%" else unquote(part)


def safe_relpath(parts: tuple[str, ...] | list[str]) -> str:
    """A relative path made of escaped names: one folder level per part."""
    return "/".join(safe_part(p) for p in parts)


def inside(root: Path, rel: str) -> Path:
    """root / rel, after checking it resolves inside root (the last line of defence)."""
    target = (root / rel)
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise InspectError(f"refusing to write {rel!r}: it would land outside {root}")
    return target


def read_outputs(path: Path) -> list[np.ndarray]:
    """A port's outputs (THEIRS): `.npy` one array; `.npz` ordered by name when every key is `output_<k>` (what
    `forward` writes; np.savez keeps the order the port wrote them in, which need not be the model's), else in
    file order."""
    arrays = read_inputs(path)
    ks = [re.fullmatch(r"output_(\d+)", k) for k in arrays]
    if len(arrays) > 1 and all(ks):
        return [arrays[k] for k in sorted(arrays, key=lambda k: int(k.split("_")[1]))]
    return list(arrays.values())


def read_inputs(path: Path, features: int | None = None) -> dict[str, np.ndarray]:
    """`.npy` (one array), `.npz` (one array per model input) or `.csv` (one 2-D sequence, batch of 1).

    Returned in file order; `.npz` keys are kept so inputs can be matched by name. features: the number of
    features per step the model takes, when known: a CSV whose first row has another count is refused before
    it is parsed (`_check_csv_size`).
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
            _check_npz_size(path)
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            if not arrays:
                raise InspectError(f"{path}: holds no arrays")
            return arrays
        if suffix == ".csv":
            _check_csv_size(path, features)
            seq = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
            return {"x": seq[None]}
    except InspectError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InspectError(f"{path}: holds pickled objects, which lstm-inspect never loads") from exc
        raise InspectError(f"{path}: is not a readable {suffix} file ({_first_line(exc)})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise InspectError(f"{path}: is not a readable {suffix} file ({_first_line(exc)})") from exc
    raise InspectError(f"{path}: inputs must be .npy, .npz or .csv, not {suffix or 'a file without extension'}")


def _check_npz_size(path: Path) -> None:
    """Refuse an .npz whose members would inflate past the caps, before inflating any."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    total = sum(i.file_size for i in infos)
    limit = min(MAX_INPUT_BYTES, MAX_INPUT_INFLATION * max(path.stat().st_size, 1))
    if total > limit:
        raise InspectError(f"{path}: its arrays would inflate to {total:,} bytes, more than {limit:,}; "
                           "refusing to read it")
    for info in infos:
        if info.flag_bits & 0x1:
            raise InspectError(f"{path}: member {info.filename} is encrypted")


MAX_CSV_COLUMNS = 1 << 16  # features per step a CSV may hold; the model's own count when it is known


def _check_csv_size(path: Path, features: int | None) -> None:
    """Refuse a CSV before parsing it (NumPy's parser takes 17 times the file's size in memory and a second for
    20 MB): when its first row has more than MAX_CSV_COLUMNS values or another number than the model's
    `features`, or when it would parse to more than the `.npz` caps allow (MAX_INPUT_BYTES; a value takes at
    least two characters, so a CSV never inflates past 4 times its size otherwise). Counts commas and newlines
    a megabyte at a time: linear, nothing kept."""
    with open(path, "rb") as f:
        columns, rows = _csv_first_row(f), 0
        f.seek(0)
        last = b"\n"
        while chunk := f.read(1 << 20):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    rows += last != b"\n"
    if columns is not None and (columns > MAX_CSV_COLUMNS or (features is not None and columns != features)):
        count = f"more than {MAX_CSV_COLUMNS:,}" if columns > MAX_CSV_COLUMNS else f"{columns:,}"
        expected = f"the model takes {features}" if features is not None else f"at most {MAX_CSV_COLUMNS:,} are read"
        raise InspectError(f"{path}: its first row holds {count} values (features per step); {expected}; "
                           "refusing to read it")
    if columns is not None and rows * columns * 8 > MAX_INPUT_BYTES:
        raise InspectError(f"{path}: {rows:,} rows of {columns:,} values would take {rows * columns * 8:,} bytes, more "
                           f"than {MAX_INPUT_BYTES:,}; refusing to read it")


def _csv_first_row(f: BinaryIO) -> int | None:
    """The number of values in the first row that is neither blank nor a # comment (as np.loadtxt skips them),
    counted up to MAX_CSV_COLUMNS + 1; None when the first megabyte holds no such row's start."""
    chunk = f.read(1 << 20)
    start = 0
    while start < len(chunk):
        end = chunk.find(b"\n", start)
        line = chunk[start:] if end < 0 else chunk[start:end]
        if line.strip() and not line.lstrip().startswith(b"#"):
            columns = line.count(b",") + 1
            while end < 0 and columns <= MAX_CSV_COLUMNS and (chunk := f.read(1 << 20)):
                end = chunk.find(b"\n")
                columns += chunk.count(b",", 0, None if end < 0 else end)
            return columns
        if end < 0:
            return None
        start = end + 1
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:150] if text else type(exc).__name__


def ordered_inputs(arrays: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    """Match arrays to the model's inputs: by input name when every name is there, else in file order."""
    if len(arrays) > 1 and all(n in arrays for n in names):
        return [arrays[n] for n in names]
    return list(arrays.values())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_or_inside(a: Path, b: Path) -> bool:
    """a is b, or lies inside folder b."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def _check_target(target: Path, force: bool, protect: list[Path], folder: bool) -> None:
    for p in protect:
        if _same_or_inside(p, target):
            raise InspectError(f"{target}: holds the input {p}; refusing to write over it")
    if not target.exists() and not target.is_symlink():
        return
    if not force:
        raise InspectError(f"{target}: already exists; pass --force to replace it")
    if target.is_symlink():
        raise InspectError(f"{target}: is a symbolic link; refusing to replace it")
    if folder:
        if not target.is_dir():
            raise InspectError(f"{target}: exists and is not a directory")
        if not (target / MARKER).is_file():
            raise InspectError(f"{target}: is a folder lstm-inspect did not write (it has no {MARKER}); "
                               "--force replaces only lstm-inspect's own output; choose another --out")
    elif target.is_dir():
        raise InspectError(f"{target}: is a directory")


def _parent(target: Path) -> Path:
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise InspectError(f"{parent}: is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InspectError(f"{parent}: cannot be created ({exc.strerror or exc})") from exc
    return parent


@contextmanager
def atomic_path(target: Path, force: bool, protect: list[Path] | None = None) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it only when the block succeeds.

    Refuses to replace an existing file unless `force`, and never replaces an input; missing parent
    folders are created. On any failure the temporary file is removed and whatever was at `target`
    is left as it was. The file gets the permissions the user's umask gives a new file.
    """
    _check_target(target, force, protect or [], folder=False)
    parent = _parent(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InspectError(f"{target}: cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except OSError as exc:
        raise InspectError(f"{target}: could not be written ({exc.strerror or exc}); nothing was changed") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_arrays(target: Path, arrays: dict[str, np.ndarray], force: bool, protect: list[Path] | None = None,
                 fmt: str | None = None) -> Path:
    """One array to `.npy`, or named arrays to `.npz` (member names escaped), atomically; returns the path."""
    kind = fmt or target.suffix.lower().lstrip(".")
    if kind not in ("npy", "npz"):
        raise InspectError(f"{target}: outputs are written as .npy (one array) or .npz")
    if kind == "npy" and len(arrays) != 1:
        raise InspectError(f"{target}: the model gives {len(arrays)} outputs; write them to a .npz")
    with atomic_path(target, force, protect) as tmp, open(tmp, "wb") as f:
        if kind == "npy":
            np.save(f, next(iter(arrays.values())), allow_pickle=False)
        else:
            _write_npz(f, arrays)
    return target


def _write_npz(f: object, arrays: dict[str, np.ndarray]) -> None:
    """An .npz np.load reads, one member per array; names are already safe (see safe_relpath)."""
    for name in arrays:
        if name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
            raise InspectError(f"refusing the array name {name!r} inside an .npz")
    np.savez(f, **arrays)  # type: ignore[arg-type]


@contextmanager
def atomic_dir(target: Path, force: bool, protect: list[Path] | None = None) -> Iterator[Path]:
    """A temporary folder beside `target`, renamed onto it only when the block succeeds.

    An existing `target` is refused unless `force`, and even then only when lstm-inspect wrote it
    (its marker file is there) and it holds no input; it is moved aside, replaced, and removed only
    once the new folder is in place. On any failure nothing the user had is touched.
    """
    _check_target(target, force, protect or [], folder=True)
    parent = _parent(target)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise InspectError(f"{target}: cannot write here ({exc.strerror or exc})") from exc
    try:
        (tmp / MARKER).write_text("written by lstm-inspect; `--force` may replace this folder\n")
        yield tmp
        _fix_permissions(tmp)
        _swap_into_place(tmp, target)
    except OSError as exc:
        raise InspectError(f"{target}: could not be written ({exc.strerror or exc}); nothing was changed") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fix_permissions(folder: Path) -> None:
    """What a normal write would give: files 0666 and folders 0777, less the user's umask."""
    mask = _umask()
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _swap_into_place(tmp: Path, target: Path) -> None:
    backup = None
    if target.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".replaced", dir=target.parent))
        backup.rmdir()
        os.replace(target, backup)
    try:
        os.replace(tmp, target)
    except OSError:
        if backup is not None:
            os.replace(backup, target)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


TRACE_STEP = ("processing order: step k of a go_backwards direction (or a Bidirectional's backward one) consumed "
              "input step steps-1-k")
TRACE_MEANINGS = {
    "x": "the input this direction consumed at each step (N_i columns), e.g. an Embedding's output",
    "mask": "1 where the step was processed, 0 where a mask skipped it (all 1 when nothing masks the layer)",
    "*": "this quantity at each step; where mask is 0 it is what the cell would compute and is not used (the states "
         "h and c hold their previous value, the initial state before the first processed step)",
}


def write_trace(target: Path, traces: dict[tuple[str, ...], dict[str, np.ndarray]], fmt: str, force: bool,
                protect: list[Path] | None = None) -> list[str]:
    """Per-step golden values: `{direction name parts: {quantity: (batch, steps, n)}}` to one .npz or CSVs.

    npz keys are `<direction>/<quantity>`, the direction's names escaped (`safe_relpath`). A CSV
    folder holds `<direction>/<quantity>.csv` with columns sample, step, then one per unit, and a
    manifest.json mapping each file to its direction's original name. Returns what was written.
    """
    if fmt == "npz":
        flat = {f"{safe_relpath(parts)}/{q}": a for parts, qs in traces.items() for q, a in qs.items()}
        write_arrays(target, flat, force, protect, fmt="npz")
        return sorted(flat)
    written = []
    with atomic_dir(target, force, protect) as tmp:
        manifest: dict[str, dict[str, object]] = {}
        for parts, quantities in traces.items():
            rel_dir = safe_relpath(parts)
            folder = inside(tmp, rel_dir)
            folder.mkdir(parents=True, exist_ok=True)
            for q, a in quantities.items():
                flat = a.ndim == 2  # one value per (sample, step): the mask
                a = a[:, :, None].astype(np.int8) if flat else a
                batch, steps, width = a.shape
                sample, step = np.meshgrid(np.arange(batch), np.arange(steps), indexing="ij")
                table = np.column_stack([sample.reshape(-1), step.reshape(-1), a.reshape(batch * steps, width)])
                h_width = quantities["h"].shape[-1] if "h" in quantities else width
                prefix = "z" if q == "z" and width != h_width else "x" if q == "x" else "u"  # LSTM's z: 4·N_c
                header = "sample,step," + (q if flat else ",".join(f"{prefix}{k}" for k in range(width)))
                fmt_cols = ["%d", "%d"] + ["%.9g"] * width
                np.savetxt(folder / f"{q}.csv", table, delimiter=",", header=header, comments="", fmt=fmt_cols)
                rel = f"{rel_dir}/{q}.csv"
                manifest[rel] = {"direction": "/".join(parts), "quantity": q, "batch": batch, "steps": steps,
                                 "columns": width, "meaning": TRACE_MEANINGS.get(q, TRACE_MEANINGS["*"]),
                                 "step": TRACE_STEP}
                written.append(rel)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return written
