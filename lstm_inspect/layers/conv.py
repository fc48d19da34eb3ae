"""Layers around recurrent layers: to be filled in (registered with lstm_inspect.layers.layer)."""

from __future__ import annotations
