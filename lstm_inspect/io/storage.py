"""Low-level, read-only access to the HDF5 that holds the weights, wherever it sits.

The HDF5 is either the file itself (legacy `.h5`, `.weights.h5`) or a member of a `.keras`
zip. A stored (uncompressed) member, which is what Keras writes, is read in place through a
window on the zip file; a compressed one is inflated once, with a cap on how far it may inflate,
into an anonymous temporary file (a zip member can only be re-read by inflating it again from
its start, which made backward seeks quadratic). Every dataset is reached by hard links only, and
its data must lie in the file: HDF5 external links, virtual datasets and external raw storage
would make us read another file (or a device, a FIFO), so all three are refused.

Every h5py or zipfile call on the user's file goes through `reading(...)`, which turns that
library's failure into `DamagedFile`; nothing else is caught here, so a bug of ours is never
reported as a damaged file.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
from h5py import h5d, h5g, h5l, h5o, h5t

from lstm_inspect.base.errors import InspectError
from lstm_inspect.model.checkpoint import StoredArray

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# A weights member may not inflate past this many times its compressed size (nor past 8 GiB).
MAX_INFLATION_RATIO = 200
MAX_MEMBER_BYTES = 8 << 30
# Compression methods Python's zipfile reads: stored, deflate, bzip2, lzma.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
               zipfile.ZIP_LZMA: "lzma"}


class DamagedFile(InspectError):
    """An HDF5 or zip call on the user's file failed: the file's fault, not ours.

    Raised without the file's name (the helpers below do not know it); the reader that does adds
    it (`probe.hdf5_errors`, `WeightFile`).
    """


class NotRead(InspectError):
    """A part of the file that reads fine but that no Keras writes and that would take long to read (thousands
    of attribute chunks): refused, without the file's name, which the reader adds (`probe.hdf5_errors`)."""


# What h5py, zipfile and zlib raise for a file they cannot read.
FILE_ERRORS = (OSError, KeyError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, UnicodeDecodeError)
# ...and, where h5py turns a stored HDF5 datatype into a NumPy one (reading an attribute, a dataset's dtype), the
# TypeError it raises for a datatype it has no NumPy form for: a damaged header gives "Unknown string encoding
# (value 10)" (h5py `h5t.TypeStringID.py_dtype`) or "No NumPy equivalent for ...".
TYPE_ERRORS = (*FILE_ERRORS, TypeError)


@contextmanager
def reading(what: str, errors: tuple[type[BaseException], ...] = FILE_ERRORS) -> Iterator[None]:
    """Around one library call that reads the user's file: its failure becomes a DamagedFile. errors=TYPE_ERRORS
    where the call converts a stored datatype (attributes, a dataset's dtype)."""
    try:
        yield
    except InspectError:
        raise
    except errors as exc:
        raise DamagedFile(f"{what} ({_short(exc)})") from exc


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


def check_zip_member(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member Python's zipfile would fail on: encrypted, or an unknown compression method."""
    if info.flag_bits & 0x1:
        raise InspectError(f"{path}: the zip entry {info.filename} is encrypted; Keras never encrypts its archives")
    if info.compress_type not in ZIP_METHODS:
        raise InspectError(f"{path}: the zip entry {info.filename} uses compression method {info.compress_type}, "
                           f"which is not one Keras or Python's zipfile writes ({', '.join(ZIP_METHODS.values())})")


def open_zip_member(path: Path, zf: zipfile.ZipFile, name: str) -> BinaryIO:
    """A seekable binary stream over one zip member, without extracting it next to the user's files.

    A stored member is a window on the zip file. A compressed one is inflated once into an anonymous
    temporary file (removed when closed), refused past MAX_INFLATION_RATIO × its compressed size.
    """
    with reading(f"the zip entry {name} could not be read"):
        info = zf.getinfo(name)
    check_zip_member(path, info)
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
    tmp = tempfile.TemporaryFile()
    try:
        with reading(f"the zip entry {name} could not be inflated"), zf.open(info) as member:
            copied = _copy_capped(member, tmp, limit)
        if copied != info.file_size:
            raise InspectError(f"{path}: the zip entry {name} inflates to {copied} bytes, not the {info.file_size} "
                               "its header declares")
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp  # type: ignore[return-value]


def _copy_capped(src: BinaryIO, dst: BinaryIO, limit: int) -> int:
    copied = 0
    while chunk := src.read(1 << 20):
        copied += len(chunk)
        if copied > limit:
            raise InspectError(f"a zip entry inflates past {limit} bytes")
        dst.write(chunk)
    return copied


@dataclass(frozen=True)
class WeightFile:
    """The HDF5 holding the weights: `path` itself, or member `member` of the zip at `path`.

    A compressed member is inflated once per WeightFile and kept in an anonymous temporary file.
    """

    path: Path
    member: str | None = None
    _inflated: list[BinaryIO] = field(default_factory=list, compare=False, repr=False)

    @contextmanager
    def open(self) -> Iterator[h5py.File]:
        with ExitStack() as stack:
            try:
                with reading("the weights could not be read"):
                    f = stack.enter_context(h5py.File(self._raw(stack), "r"))
            except DamagedFile as exc:
                raise InspectError(f"{self.path}: {exc}") from exc
            yield f

    def _raw(self, stack: ExitStack) -> Any:
        if self.member is None:
            return self.path
        if self._inflated:
            self._inflated[0].seek(0)
            return self._inflated[0]
        zf = stack.enter_context(zipfile.ZipFile(self.path))
        raw = open_zip_member(self.path, zf, self.member)
        if isinstance(raw, io.BufferedReader):
            return stack.enter_context(raw)
        self._inflated.append(raw)  # kept for the next read; removed by the OS when closed or at exit
        return raw

    def read(self, keys: list[str]) -> list[np.ndarray]:
        """Read datasets by path; bfloat16 variables (stored as opaque |V2) are widened to float32."""
        out = []
        with self.open() as f:
            for key in keys:
                try:
                    ds = dataset(f, key, self.path)
                    _check_declared_size(ds, key, self.path)
                    with reading(f"dataset {key} could not be read", TYPE_ERRORS):
                        data = ds[()]
                    out.append(decode_array(data, ds))
                except DamagedFile as exc:
                    raise InspectError(f"{self.path}: {exc}") from exc
        return out


# Keras stores weights uncompressed, so a dataset's data is about as large as its declared shape.
# One that declares far more than the file stores (a fill value behind an absurd shape) is refused
# before anything is allocated. The declared size comes from the shape; the stored size from HDF5's
# own bookkeeping (external storage, which could point at a device, is refused before this).
MAX_EXPANSION = 16
SMALL_DATASET = 64 << 20


def _check_declared_size(ds: h5py.Dataset, key: str, path: Path) -> None:
    with reading(f"dataset {key} could not be read", TYPE_ERRORS):
        shape, itemsize = ds.shape or (), ds.dtype.itemsize
    declared = int(np.prod(shape, dtype=np.float64)) * itemsize
    if declared <= SMALL_DATASET:
        return
    with reading(f"dataset {key} could not be read"):
        stored_bytes = ds.id.get_storage_size()
    if declared > MAX_EXPANSION * stored_bytes + SMALL_DATASET:
        raise InspectError(f"{path}: dataset {key} declares shape {shape} ({declared:,} bytes) but the file "
                           f"stores {stored_bytes:,} bytes of it; refusing to read it")


def decode_array(data: Any, ds: h5py.Dataset) -> np.ndarray:
    data = np.asarray(data)
    if data.dtype.kind == "V" and data.dtype.itemsize == 2 and attr_str(attr(ds, "dtype")) == "bfloat16":
        return (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return data


def dataset(f: h5py.Group, key: str, path: Path) -> h5py.Dataset:
    """The dataset at `key`, reached through hard links only, its data inside this file."""
    return h5py.Dataset(_dataset_id(f, key, path))


def hard_links_only(group: h5py.Group) -> bool:
    """Whether every link under `group`, at any depth, is a hard link: one pass of HDF5's own visit (which
    lists each group's links once), so a caller about to open thousands of datasets there can open each by
    its whole path (`stored(..., hard=True)`) instead of checking it link by link."""
    with reading("the group tree could not be walked"):
        stopped = group.id.links.visit(lambda name, info: True if info.type != h5l.TYPE_HARD else None, info=True)
    return stopped is None


def _dataset_id(f: h5py.Group, key: str, path: Path, hard: bool = False) -> Any:
    """`dataset` at h5py's low level (a DatasetID), link by link, or by its whole path at once when the caller
    knows every link under `f` is a hard one (`hard_links_only`)."""
    parts = [p for p in key.split("/") if p]
    node: Any = None
    if hard and parts:
        try:
            node = h5o.open(f.id, "/".join(parts).encode("utf-8", "surrogateescape"))
        except FILE_ERRORS:
            node = None  # missing or unreadable: the walk below says which
    if node is None:
        node = f.id
        for part in parts:
            if not isinstance(node, h5g.GroupID):
                raise InspectError(f"{path}: {key} is not a dataset path in the weights file")
            name = part.encode("utf-8", "surrogateescape")
            try:
                link = node.links.get_info(name)
            except FILE_ERRORS as exc:
                with reading(f"{key} could not be opened"):
                    there = node.links.exists(name)
                if not there:
                    raise InspectError(f"{path}: dataset {key} is missing from the weights file") from None
                raise DamagedFile(f"{key} could not be opened ({_short(exc)})") from exc
            if link.type != h5l.TYPE_HARD:
                raise InspectError(f"{path}: {key} is a link to another file or path, which lstm-inspect does not "
                                   "follow")
            with reading(f"{key} could not be opened"):
                node = h5o.open(node, name)
    if not isinstance(node, h5d.DatasetID):
        raise InspectError(f"{path}: {key} is a group, not a dataset")
    with reading(f"dataset {key} could not be opened"):
        dcpl = node.get_create_plist()
        virtual = dcpl.get_layout() == h5d.VIRTUAL
        external = [dcpl.get_external(i) for i in range(dcpl.get_external_count())]
    if virtual:
        raise InspectError(f"{path}: dataset {key} is a virtual dataset that points into other files")
    if external:
        raise InspectError(f"{path}: dataset {key} keeps its data in another file ({_external_name(external)}); "
                           "lstm-inspect reads only what is inside the checkpoint")
    return node


def _external_name(external: Any) -> str:
    first = external[0][0] if external and external[0] else "?"
    text = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
    return repr(text[:80])


def child(group: h5py.Group, name: str) -> Any:
    """A direct child reached by a hard link, else None."""
    with reading(f"{name} could not be opened"):
        link = group.get(name, getlink=True)
        if link is None or not isinstance(link, h5py.HardLink):
            return None
        return group[name]


def members(group: h5py.Group) -> list[str]:
    """The names of a group's children."""
    with reading("a group could not be listed"):
        return list(group.keys())


def attr(obj: Any, name: str) -> Any:
    """An attribute's value, or None when absent."""
    with reading(f"attribute {name} could not be read", TYPE_ERRORS):
        return _text_attr(obj.attrs, name) if name in obj.attrs else None


# The datatypes of the attributes lstm-inspect reads: text (fixed or variable length), and the float64 of the
# empty list Keras writes as array([]). A damaged header can turn one into a variable-length sequence, which
# HDF5 itself crashes on (a segmentation fault, not an error) when h5py reads it: refused before reading.
TEXT_CLASSES = frozenset((h5t.STRING, h5t.FLOAT, h5t.INTEGER))


def _text_attr(attrs: Any, name: str) -> Any:
    """attrs[name], after checking that its datatype is one of TEXT_CLASSES (inside `reading`)."""
    kind = attrs.get_id(name).get_type().get_class()
    if kind not in TEXT_CLASSES:
        raise DamagedFile(f"attribute {name} is stored as HDF5 datatype class {kind}, not text")
    return attrs[name]


def has_attr(obj: Any, name: str) -> bool:
    with reading(f"attribute {name} could not be read", TYPE_ERRORS):
        return name in obj.attrs


def groups_under(f: h5py.Group) -> list[tuple[str, h5py.Group]]:
    """Every group reachable from `f` by h5py's visit (each object once), with its path."""
    found: list[tuple[str, Any]] = []
    with reading("the group tree could not be walked"):
        f.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Group) else None)
    return found


def stored(f: h5py.Group, key: str, path: Path, hard: bool = False) -> StoredArray:
    """Where a dataset is, its shape and dtype (no data). hard: every link under f is a hard link
    (`hard_links_only`), so the dataset is opened by its whole path."""
    ds = _dataset_id(f, key, path, hard)
    with reading(f"dataset {key} could not be read", TYPE_ERRORS):
        shape = tuple(int(n) for n in ds.shape or ())
        dt = ds.dtype
        dtype = "bfloat16" if dt.kind == "V" and attr_str(attr(h5py.Dataset(ds), "dtype")) == "bfloat16" else \
            _dtype_name(dt)
    return StoredArray(key=key.lstrip("/"), shape=shape, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _dtype_name(dt: np.dtype) -> str:
    return str(dt)


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


MAX_NAME_CHUNKS = 1000  # Keras chunks a name list only past 64 KB: a thousand chunks hold millions of names


def attr_strings(group: h5py.Group, name: str) -> list[str] | None:
    """A list-of-strings attribute, including Keras's chunked form name0, name1, ... (None if absent).

    The chunked form is read in one pass over the attribute names (a file may hold thousands).
    """
    with reading(f"attribute {name} could not be read", TYPE_ERRORS):
        attrs = group.attrs
        if name in attrs:
            values = [_text_attr(attrs, name)]
        else:
            # h5py gives an attribute name that is not UTF-8 as bytes: never one of Keras's names
            numbered = sorted((int(k[len(name):]), k) for k in attrs.keys() if isinstance(k, str)
                              and k.startswith(name) and k[len(name):].isdigit() and len(k) - len(name) < 9)
            if not numbered or numbered[0][0] != 0:
                return None
            if len(numbered) > MAX_NAME_CHUNKS:
                # HDF5 finds an attribute by a linear scan: thousands of chunks would take minutes to read
                where = "the root group" if group.name == "/" else f"group {group.name.lstrip('/')}"
                raise NotRead(f"attribute {name} of {where} comes in {len(numbered):,} chunks; Keras writes a few "
                              "at most, so lstm-inspect does not read it")
            values = []
            for expected, (k, key) in enumerate(numbered):
                if k != expected:
                    break
                values.append(_text_attr(attrs, key))
    out: list[str] = []
    for value in values:
        arr = np.atleast_1d(np.asarray(value))
        if arr.dtype.kind == "f" and arr.size == 0:
            continue  # Keras writes an empty list as array([], dtype=float64)
        if arr.dtype.kind not in "SUO":
            raise DamagedFile(f"attribute {name} holds {arr.dtype} values, not names")
        for item in arr.reshape(-1).tolist():
            if isinstance(item, bytes):
                try:
                    item = item.decode("utf-8")
                except UnicodeDecodeError:
                    raise DamagedFile(f"attribute {name} holds a name that is not UTF-8 text") from None
            out.append(str(item))
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
