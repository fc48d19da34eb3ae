"""Ports of a Keras model to other runtimes, written from the checkpoint alone and verified on the way out.

`lstm-inspect export` writes the whole model (or one recurrent layer, `--layer`) for another
runtime without TensorFlow and without the runtime itself: an ONNX graph (`onnx/`) or a
self-contained PyTorch module with its weights in safetensors (`torch/`). Each target walks the
same model graph as the NumPy engine (`lstm_inspect.engine.network.walk_graph`), one emitter per layer
kind, and each emitter mirrors the engine's function for that kind, masks included. What a target
cannot express exactly is refused before anything is written.

After writing, the export is run by its real runtime (onnxruntime, torch) on an input and compared
with the engine, within verify's tolerance: the report says how close, or why it was not run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.check.verify import Comparison, compare
from lstm_inspect.export.onnx import build as onnx_build
from lstm_inspect.export.plan import Plan, RuntimeBroken, RuntimeFailed, output_names, plan_export
from lstm_inspect.export.torch import build as torch_build
from lstm_inspect.io.arrays import atomic_dir, atomic_path, inside
from lstm_inspect.model.checkpoint import Checkpoint


@dataclass(frozen=True)
class Target:
    """One runtime lstm-inspect writes for."""

    name: str  # "onnx", "pytorch"
    runtime: str  # the package that runs the export: "onnxruntime", "torch"
    extra: str  # lstm-inspect's pip extra that installs what writing and running need
    folder: bool  # writes a folder (else one file)
    build: Callable[[Plan], dict[str, bytes]]  # file name inside the output (or "" for the file itself) -> bytes
    run: Callable[[Path, list[np.ndarray]], list[np.ndarray]]  # runs the written export on inputs
    needs: tuple[str, ...] = ()  # packages writing needs (not the runtime)
    runtime_install: str = ""  # what to pip install for the runtime that verifies the export

    def runtime_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.runtime)
        except importlib.metadata.PackageNotFoundError:
            return None


def _onnx_build(plan: Plan) -> dict[str, bytes]:
    return {"": onnx_build.build(plan)}


TARGETS = {
    "onnx": Target("onnx", "onnxruntime", "onnx", False, _onnx_build, onnx_build.run, needs=("onnx",),
                   runtime_install="'lstm-inspect[onnx]'"),
    # torch is not in the extra (its CPU and CUDA builds are chosen per machine): the runtime is installed apart
    "pytorch": Target("pytorch", "torch", "pytorch", True, torch_build.build, torch_build.run, needs=("safetensors",),
                      runtime_install="torch"),
}


@dataclass
class ExportReport:
    file: Path
    target: str
    out: Path
    what: str
    written: list[str]
    runtime: str | None  # "onnxruntime 1.32.0" when the export was run
    comparisons: list[Comparison] = field(default_factory=list)
    not_verified: str | None = None  # why the export was not run
    run_failed: bool = False  # the runtime is there but could not run the export
    input: str = ""
    batch: int = 0
    steps: int = 0
    atol: float = 1e-5
    rtol: float = 1e-4
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.run_failed and all(c.ok for c in self.comparisons)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    def summary(self) -> str:
        if self.not_verified:
            return f"not verified: {self.not_verified}"
        verdict = "verified" if self.ok else "MISMATCH"
        return (f"{verdict} with {self.runtime} against the NumPy engine: max |Δ| {self.max_abs:.1e} over "
                f"{self.batch}×{self.steps} steps of {self.input}")

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "target": self.target, "out": str(self.out), "exported": self.what,
                "written": self.written, "verified": self.not_verified is None and self.ok,
                "runtime": self.runtime, "not_verified": self.not_verified, "input": self.input,
                "batch": self.batch, "steps": self.steps, "atol": self.atol, "rtol": self.rtol,
                "max_abs_error": self.max_abs if self.comparisons else None,
                "outputs": [c.to_dict() for c in self.comparisons], "notes": self.notes, "summary": self.summary()}


def _missing(packages: tuple[str, ...]) -> list[str]:
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def export(ckpt: Checkpoint, target: str, out: Path, *, layer: str | None = None, opset: int | None = None,
           xs: list[np.ndarray] | None = None, input_label: str | None = None, seed: int = 0, force: bool = False,
           protect: list[Path] | None = None, atol: float = 1e-5, rtol: float = 1e-4) -> ExportReport:
    """Write the export, then run it with its runtime (when installed) and compare with the engine.

    Raises InspectError, before anything is written, for what cannot be exported exactly. A
    mismatch is in the report (`ok` False), the written export kept.
    """

    if target not in TARGETS:
        raise InspectError(f"--to must be one of {', '.join(TARGETS)}, not {target!r}")
    ckpt.refuse_not_yet("export", layer)
    t = TARGETS[target]
    missing = _missing(t.needs)
    if missing:
        raise InspectError(f"writing {target} needs {', '.join(missing)}: pip install 'lstm-inspect[{t.extra}]'")
    plan = plan_export(ckpt, layer, opset)
    inputs = plan.check_inputs(xs) if xs is not None else plan.default_inputs(seed)
    version = t.runtime_version()
    # the engine's run comes before anything is written: a model past the resource budget is refused first
    expected = plan.reference(inputs) if version is not None else []
    try:
        files = t.build(plan)
    except InspectError as exc:  # name the file in the one line the user sees
        message = str(exc)
        if str(ckpt.file) in message:
            raise
        raise InspectError(f"{ckpt.file}: {message}") from exc
    if t.folder:
        with atomic_dir(out, force, protect) as tmp:
            for name, data in files.items():
                inside(tmp, name).write_bytes(data)
    else:
        with atomic_path(out, force, protect) as tmp:
            tmp.write_bytes(files[""])
    written = sorted(files) if t.folder else [out.name]
    first = np.asarray(inputs[0])
    report = ExportReport(ckpt.file, target, out, plan.what, written, None, input=input_label or (
        f"a seeded random input (seed {seed})"), batch=int(first.shape[0]) if first.ndim else 1,
        steps=int(first.shape[1]) if first.ndim > 1 else 1, atol=atol, rtol=rtol)
    if version is None:
        report.not_verified = f"{t.runtime} is not installed (pip install {t.runtime_install})"
        return report
    report.runtime = f"{t.runtime} {version}"
    try:
        got = t.run(out, inputs)
    except RuntimeFailed as exc:
        report.not_verified, report.run_failed = f"{report.runtime} could not run it: {exc}", True
        return report
    except RuntimeBroken as exc:  # installed but not importable: not verified, as when it is missing
        report.not_verified, report.runtime = str(exc), None
        return report
    if len(got) != len(expected):
        raise InspectError(f"{out}: the export gives {len(got)} outputs where the model gives {len(expected)}")
    names = output_names(plan, len(expected))
    report.comparisons = [compare(n, g, e, atol, rtol) for n, g, e in zip(names, got, expected)]
    return report
