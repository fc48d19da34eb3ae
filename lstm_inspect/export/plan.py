"""The scope of one export: the whole model or one recurrent direction, the engine's outputs it must match, and
the error a runtime's failure becomes. Shared by every target (`lstm_inspect.export.onnx`, `lstm_inspect.export.torch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.network import DEFAULT_BATCH, DEFAULT_STEPS, Network, default_inputs, run_direction
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection


@dataclass
class Plan:
    """What one export holds: the whole model (`net`), or one recurrent direction alone (`direction`).

    A direction alone takes x (batch, steps, N_i) and gives its output sequence in processing order
    (reversed for go_backwards, as `forward --layer` writes it) and its final states, unmasked,
    from zero states.
    """

    ckpt: Checkpoint
    net: Network | None = None
    direction: RecurrentDirection | None = None
    opset: int | None = None

    @property
    def what(self) -> str:
        return f"layer {self.direction.name}" if self.direction is not None else "the whole model"

    def reference(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """The engine's outputs for the export's inputs: what the export must compute."""
        if self.direction is not None:
            res = run_direction(self.direction, xs[0], sequences=True)
            return [res.outputs, *res.states]
        assert self.net is not None
        return self.net.run(xs)

    def default_inputs(self, seed: int = 0) -> list[np.ndarray]:
        if self.direction is not None:
            rng = np.random.default_rng(seed)
            shape = (DEFAULT_BATCH, DEFAULT_STEPS, self.direction.input_dim or 1)
            return [rng.normal(size=shape).astype(np.float32)]
        assert self.net is not None
        return default_inputs(self.net, seed)

    def check_inputs(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        if self.direction is not None:
            d = self.direction
            if len(xs) != 1:
                raise InspectError(f"layer {d.name}: takes one input, {len(xs)} were given")
            x = np.asarray(xs[0])
            if x.ndim != 3 or x.shape[-1] != d.input_dim:
                raise InspectError(f"layer {d.name}: input has shape {x.shape} but the layer expects "
                                   f"(batch, steps, {d.input_dim})")
            return [x]
        assert self.net is not None
        return self.net.check_inputs(xs)


def plan_export(ckpt: Checkpoint, layer: str | None = None, opset: int | None = None) -> Plan:
    """The export's scope, or one line saying why the file cannot be exported whole."""
    if layer is not None:
        directions = ckpt.directions_of(layer)
        if len(directions) > 1:
            raise InspectError(f"{ckpt.file}: --layer {layer} is a Bidirectional; export runs one direction alone: "
                               f"export each ({', '.join(d.name for d in directions)}), or the whole model")
        d = directions[0]
        if d.settings.time_major:
            raise InspectError(f"{ckpt.file}: layer {d.name} is time_major, and a direction exported alone takes "
                               "(batch, steps, N_i); export the whole model, which takes the input as this layer "
                               "does")
        return Plan(ckpt, direction=d, opset=opset)
    if ckpt.graph is None:
        raise InspectError(f"{ckpt.file}: stores weights only, no architecture, so there is no model to export; "
                           "export one recurrent direction with --layer NAME, or give the architecture with --config")
    return Plan(ckpt, net=Network(ckpt, cache_weights=True), opset=opset)


class RuntimeFailed(Exception):
    """The runtime refused or failed to run a written export (its own error, in one line)."""


def output_names(plan: Plan, n: int) -> list[str]:
    """The export's output names: output_0... for a model; y, h (and c) for one direction."""
    if plan.direction is not None:
        return ["y", *plan.direction.cell.states][:n]
    return [f"output_{k}" for k in range(n)]
