"""What the format readers' sniffs look at (`Probe`), and the refusals of paths no reader takes.

Formats are told apart by content, never by file name (a real `model.keras` can be a Keras 2.2 HDF5):
`io.READERS` lists (sniff, read) pairs in the order they are tried, and each sniff asks the `Probe` of the
user's path. The probe reads what several sniffs share once: the file's first bytes and, for an HDF5 file, the
open file (closed when the reading is over). An HDF5 file's readers run under `hdf5_errors`, which names the
file in the storage helpers' refusals (`storage.NotRead`, `storage.DamagedFile`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import h5py

from lstm_inspect.base.errors import InspectError
from lstm_inspect.io.storage import HDF5_SIGNATURE, DamagedFile, NotRead
from lstm_inspect.model.checkpoint import Checkpoint

# An architecture from --config: the model's {"class_name", "config"} and the Keras version if recorded.
Architecture = tuple[dict[str, Any], str | None]
F = TypeVar("F", bound=Callable[..., Any])


class Probe:
    """The path a reader is asked about, and what its sniffs look at, each read once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: bytes | None = None
        self._is_hdf5: bool | None = None
        self._hdf5: h5py.File | None = None

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._hdf5 is not None:
            self._hdf5.close()

    def signature(self) -> bytes:
        """The file's first 8 bytes; a file that cannot be opened is refused here."""
        if self._signature is None:
            try:
                with open(self.path, "rb") as f:
                    self._signature = f.read(8)
            except OSError as exc:
                raise InspectError(f"{self.path}: cannot be read ({exc.strerror or exc})") from exc
        return self._signature

    def is_hdf5(self) -> bool:
        if self._is_hdf5 is None:
            self._is_hdf5 = self.signature() == HDF5_SIGNATURE or h5py.is_hdf5(str(self.path))
        return self._is_hdf5

    def hdf5(self) -> h5py.File:
        """The HDF5 file, opened once (by the first sniff that asks)."""
        if self._hdf5 is None:
            try:
                self._hdf5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise InspectError(f"{self.path}: is not a readable HDF5 file; it may be truncated or damaged "
                                   f"({str(exc).splitlines()[0][:160] if str(exc) else 'OSError'})") from exc
        return self._hdf5


def hdf5_errors(fn: F) -> F:
    """For an HDF5 file's sniffs and readers: the storage helpers' refusals, with the file's name."""

    @functools.wraps(fn)
    def wrapped(probe: Probe, *args: Any) -> Any:
        try:
            return fn(probe, *args)
        except NotRead as exc:
            raise InspectError(f"{probe.path}: {exc}") from exc
        except DamagedFile as exc:
            raise InspectError(f"{probe.path}: the HDF5 structure is damaged: {exc}") from exc

    return wrapped  # type: ignore[return-value]


# ---------------------------------------------------------------- refusals (io.READERS)


def is_missing(probe: Probe) -> bool:
    return not probe.path.exists()


def refuse_missing(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: no such file")


def is_folder(probe: Probe) -> bool:
    return probe.path.is_dir()


def refuse_folder(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: is a directory, but neither a SavedModel folder nor a TensorFlow "
                       "checkpoint's folder; lstm-inspect reads .keras, .h5, .weights.h5, SavedModel folders and TF "
                       "checkpoints")


def is_empty(probe: Probe) -> bool:
    return not probe.signature()


def refuse_empty(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: is empty")


def is_hdf5(probe: Probe) -> bool:
    return probe.is_hdf5()


def refuse_other_hdf5(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: is an HDF5 file but not a Keras checkpoint (no model_config, layer_names "
                       "or layers/)")


def anything(probe: Probe) -> bool:
    return True


def refuse_unknown(probe: Probe, architecture: Architecture | None, config: Path | None) -> Checkpoint:
    raise InspectError(f"{probe.path}: is neither HDF5 (.h5, .weights.h5) nor a Keras zip (.keras); "
                       "it does not look like a Keras checkpoint")
