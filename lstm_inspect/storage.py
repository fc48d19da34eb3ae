"""Low-level, read-only access to the HDF5 that holds the weights, wherever it sits.

The HDF5 is either the file itself (legacy `.h5`, `.weights.h5`) or a member of a `.keras`
zip. A stored (uncompressed) member, which is what Keras writes, is read in place through a
window on the zip file; a compressed one is read through `zipfile` with a cap on how far it
may inflate. Every dataset is reached by hard links only: an HDF5 external link or virtual
dataset would make us read another file, so both are refused.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import h5py
import numpy as np

from lstm_inspect.errors import InspectError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# A weights member may not inflate past this many times its compressed size (nor past 8 GiB).
MAX_INFLATION_RATIO = 200
MAX_MEMBER_BYTES = 8 << 30


@dataclass(frozen=True)
class StoredArray:
    """One dataset in the weights HDF5: where it is and what shape it has (no data)."""

    key: str
    shape: tuple[int, ...]
    dtype: str


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [start, start + size) of a file."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        self._f = open(path, "rb")
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_zip_member(path: Path, zf: zipfile.ZipFile, name: str) -> BinaryIO:
    """A seekable binary stream over one zip member, without extracting it to disk."""
    info = zf.getinfo(name)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) < 30 or header[:4] != ZIP_SIGNATURE:
            raise InspectError(f"{path}: the zip entry {name} is damaged (bad local header)")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > path.stat().st_size:
            raise InspectError(f"{path}: the zip entry {name} runs past the end of the file (truncated?)")
        return io.BufferedReader(_Window(path, start, info.file_size))  # type: ignore[arg-type]
    limit = min(MAX_MEMBER_BYTES, MAX_INFLATION_RATIO * max(info.compress_size, 1))
    if info.file_size > limit:
        raise InspectError(f"{path}: the zip entry {name} would inflate to {info.file_size} bytes, "
                           "more than a weights file can plausibly need")
    return zf.open(name)  # type: ignore[return-value]


@dataclass(frozen=True)
class WeightFile:
    """The HDF5 holding the weights: `path` itself, or member `member` of the zip at `path`."""

    path: Path
    member: str | None = None

    @contextmanager
    def open(self) -> Iterator[h5py.File]:
        try:
            if self.member is None:
                with h5py.File(self.path, "r") as f:
                    yield f
            else:
                with zipfile.ZipFile(self.path) as zf, open_zip_member(self.path, zf, self.member) as raw:
                    with h5py.File(raw, "r") as f:
                        yield f
        except InspectError:
            raise
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise InspectError(f"{self.path}: the weights could not be read ({_short(exc)})") from None

    def read(self, keys: list[str]) -> list[np.ndarray]:
        """Read datasets by path; bfloat16 variables (stored as opaque |V2) are widened to float32."""
        out = []
        with self.open() as f:
            for key in keys:
                ds = dataset(f, key, self.path)
                _check_declared_size(ds, key, self.path)
                try:
                    data = ds[()]
                except (OSError, ValueError, TypeError) as exc:
                    raise InspectError(f"{self.path}: dataset {key} could not be read ({_short(exc)})") from None
                out.append(decode_array(data, ds))
        return out


# Keras stores weights uncompressed, so a dataset's data is about as large as its declared shape.
# One that declares far more than the file stores (a fill value behind an absurd shape) is refused
# before anything is allocated.
MAX_EXPANSION = 16
SMALL_DATASET = 64 << 20


def _check_declared_size(ds: h5py.Dataset, key: str, path: Path) -> None:
    declared = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    if declared <= SMALL_DATASET:
        return
    stored_bytes = ds.id.get_storage_size()
    if declared > MAX_EXPANSION * stored_bytes + SMALL_DATASET:
        raise InspectError(f"{path}: dataset {key} declares shape {ds.shape} ({declared:,} bytes) but the file "
                           f"stores {stored_bytes:,} bytes of it; refusing to read it")


def decode_array(data: Any, ds: h5py.Dataset) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype.kind == "V" and data.dtype.itemsize == 2 and attr_str(ds.attrs.get("dtype")) == "bfloat16":
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return data


def dataset(f: h5py.Group, key: str, path: Path) -> h5py.Dataset:
    """The dataset at `key`, reached through hard links only."""
    node: h5py.Group | h5py.Dataset = f
    parts = [p for p in key.split("/") if p]
    for part in parts:
        if not isinstance(node, h5py.Group):
            raise InspectError(f"{path}: {key} is not a dataset path in the weights file")
        link = node.get(part, getlink=True)
        if link is None:
            raise InspectError(f"{path}: dataset {key} is missing from the weights file")
        if not isinstance(link, h5py.HardLink):
            raise InspectError(f"{path}: {key} is a link to another file or path, which lstm-inspect does not follow")
        node = node[part]
    if not isinstance(node, h5py.Dataset):
        raise InspectError(f"{path}: {key} is a group, not a dataset")
    if node.is_virtual:
        raise InspectError(f"{path}: dataset {key} is a virtual dataset that points into other files")
    return node


def child(group: h5py.Group, name: str) -> Any:
    """A direct child reached by a hard link, else None."""
    link = group.get(name, getlink=True)
    if link is None or not isinstance(link, h5py.HardLink):
        return None
    return group[name]


def stored(f: h5py.Group, key: str, path: Path) -> StoredArray:
    ds = dataset(f, key, path)
    return StoredArray(key=key.lstrip("/"), shape=tuple(int(n) for n in ds.shape), dtype=_dtype_name(ds))


def _dtype_name(ds: h5py.Dataset) -> str:
    if ds.dtype.kind == "V" and attr_str(ds.attrs.get("dtype")) == "bfloat16":
        return "bfloat16"
    return str(ds.dtype)


def attr_str(value: Any) -> str | None:
    """An HDF5 string attribute as str, whether h5py gives bytes, str or a 0-d array."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    return None


def attr_strings(group: h5py.Group, name: str) -> list[str] | None:
    """A list-of-strings attribute, including Keras's chunked form name0, name1, ... (None if absent)."""
    if name in group.attrs:
        values = [group.attrs[name]]
    elif f"{name}0" in group.attrs:
        values, k = [], 0
        while f"{name}{k}" in group.attrs:
            values.append(group.attrs[f"{name}{k}"])
            k += 1
    else:
        return None
    out: list[str] = []
    for value in values:
        arr = np.atleast_1d(np.asarray(value))
        if arr.dtype.kind == "f" and arr.size == 0:
            continue  # Keras writes an empty list as array([], dtype=float64)
        for item in arr.tolist():
            out.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
