"""The engine and both exports on the models TensorFlow 2.13 and 2.15's Keras wrote in each of their forms
(the 2.12-2.15 `.keras` zip, the SavedModel folder, the TF weights checkpoint with its architecture given by
--config), against the outputs those Keras releases computed (`sample_models/tf215/*.io.npz`, `tf213/*.io.npz`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from lstm_inspect.export import plan_export

from conftest import SAMPLES
from helpers.io import max_error

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'lstm-inspect[onnx]'")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'lstm-inspect[onnx]'")
torch = pytest.importorskip("torch", reason="torch is not installed (the PyTorch export's runtime): pip install torch")
pytest.importorskip("safetensors", reason="safetensors is not installed: pip install 'lstm-inspect[pytorch]'")

from lstm_inspect.export.onnx import build as to_onnx  # noqa: E402
from lstm_inspect.export.torch import build as to_torch  # noqa: E402


def _forms() -> list[tuple[str, Path, Path | None]]:
    """(id, the model, its --config) for every written form, with Keras's outputs beside it."""
    out = []
    for io in sorted((SAMPLES / "tf215").glob("*.io.npz")) + sorted((SAMPLES / "tf213").glob("*.io.npz")):
        stem = io.name[: -len(".io.npz")]
        folder = io.parent
        out.append((f"{folder.name}/{stem}.keras", folder / f"{stem}.keras", None))
        if (folder / f"{stem}_savedmodel").is_dir():
            out.append((f"{folder.name}/{stem}_savedmodel", folder / f"{stem}_savedmodel", None))
        if (folder / f"{stem}_ckpt").is_dir():
            out.append((f"{folder.name}/{stem}_ckpt", folder / f"{stem}_ckpt", folder / f"{stem}.json"))
    return out


FORMS = _forms()


def test_every_written_form_is_here() -> None:
    kinds = {name.rsplit("/", 1)[-1].split("_")[-1] for name, _, _ in FORMS}
    assert len(FORMS) >= 30 and {"savedmodel", "ckpt"} <= kinds
    assert any("gru_" in name for name, _, _ in FORMS)  # generate_tf215_gru.py's GRU and SimpleRNN models


def _io(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    folder, file = name.split("/")
    stem = file.split(".")[0].removesuffix("_savedmodel").removesuffix("_ckpt")
    with np.load(SAMPLES / folder / f"{stem}.io.npz") as d:
        names = sorted(d.files)
        return [d[k] for k in names if k.startswith("x")], [d[k] for k in names if k.startswith("y")]


LEGACY_H5 = [(f"tf215/{p.name}", p) for p in sorted((SAMPLES / "tf215").glob("*.h5"))]


@pytest.mark.parametrize("name,path,config", FORMS + [(n, p, None) for n, p in LEGACY_H5],
                         ids=[f[0] for f in FORMS] + [n for n, _ in LEGACY_H5])
def test_each_form_runs_as_keras_computed_it(name: str, path: Path, config: Path | None) -> None:
    """The engine on every form (and TF 2.15's legacy .h5), against TF 2.15's (2.13's) own outputs."""
    xs, ys = _io(name)
    outs = lstm_inspect.load(path, config).forward(xs if len(xs) > 1 else xs[0])
    assert max_error(outs if isinstance(outs, list) else [outs], ys) <= 1e-5


@pytest.mark.parametrize("name,path,config", FORMS, ids=[f[0] for f in FORMS])
@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_each_form_exports_to_what_keras_computed(target: str, name: str, path: Path, config: Path | None,
                                                   tmp_path: Path) -> None:
    xs, ys = _io(name)
    plan = plan_export(lstm_inspect.load(path, config))
    if target == "onnx":
        model = to_onnx.build_model(plan)
        out = tmp_path / "model.onnx"
        out.write_bytes(model.SerializeToString())
        onnx.checker.check_model(str(out), full_check=True)
        outs = to_onnx.run(out, xs)
    else:
        out = tmp_path / "port"
        out.mkdir()
        for file, data in to_torch.build(plan).items():
            (out / file).write_bytes(data)
        outs = to_torch.run(out, xs)
    assert max_error(outs, ys) <= 1e-5
