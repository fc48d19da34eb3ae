"""Samples of the layers around recurrent layers (called by generate.py): see generate()."""

from __future__ import annotations

from typing import Any, Callable


def generate(keras: Any, layers: Any, save: Callable[..., None], seq: Callable[..., Any], prefix: str) -> None:
    """Write this module's samples with `save(name, model, x, kinds, weights_rng=...)`; prefix is k3 or tfk."""
