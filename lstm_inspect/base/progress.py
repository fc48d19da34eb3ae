"""Progress of long work, reported by the library and drawn (or not) by whoever listens.

The library never draws anything: long loops call `advance(...)`, which does nothing unless a
listener is installed for the current context (`listening(fn)`), as the CLI does on a terminal
(a rich progress bar on stderr that appears only once a command has run about two seconds).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Listener = Callable[[str, float, float | None], None]  # (what, done, total or None)

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("lstm_inspect_progress", default=None)


def advance(what: str, done: float, total: float | None = None) -> None:
    """Report that `done` of `total` units of `what` are finished (no-op without a listener)."""
    fn = _listener.get()
    if fn is not None:
        fn(what, done, total)


@contextlib.contextmanager
def listening(fn: Listener) -> Iterator[None]:
    token = _listener.set(fn)
    try:
        yield
    finally:
        _listener.reset(token)
