"""The screens people read, at 80 and 120 columns (issue 23 §3): `show`, `verify` (passing and failing), `stats` and
every command's --help, rendered by the CLI in-process with COLUMNS set and stdout not a terminal (rich honours
COLUMNS there too). Each screen: no line wider than the terminal, no name split, bars one row per output on a stated
scale; and the values shown are Keras's own (its layer.output shapes and count_params, in a subprocess per Keras
generation, skipped without Keras)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from lstm_inspect import cli, load
from lstm_inspect.cli import SPARK, app

from conftest import SAMPLES

WIDTHS = (80, 120)
COMMANDS = ("show", "forward", "verify", "trace", "stats", "dump", "export", "plot", "diagnose")
# option -> the choices its help must list (the library's own lists are checked against them below)
CHOICES = {"export": ["onnx|pytorch"], "dump": ["gates|keras|pytorch|onnx", "csv|npz|json"],
           "trace": ["npz|csv", "float32|float64"], "forward": ["float32|float64"], "verify": ["float32|float64"]}
SHOW_SAMPLES = ("k3_single.keras", "tfk_gru.h5", "tfk_embedding_mask_zero_bilstm.h5", "tfk_seq2seq.h5",
                "k3_seq2seq.keras")


def screen(width: int, *argv: str) -> tuple[int, str, list[str]]:
    """(exit code, stdout, its lines) of one command run in-process at a terminal width."""
    result = CliRunner().invoke(app, list(argv), env={"COLUMNS": str(width)})
    return result.exit_code, result.stdout, result.stdout.splitlines()


def assert_fits(lines: list[str], width: int) -> None:
    wide = [line for line in lines if len(line) > width]
    assert not wide, f"{len(wide)} lines wider than {width}: {wide[:3]}"


def assert_whole(names: list[str], lines: list[str]) -> None:
    """Every name appears unbroken on some line, as a word of its own (not cut at the end of a line)."""
    for name in names:
        pattern = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        assert any(pattern.search(line) for line in lines), f"{name!r} is split or missing"


# ---------------------------------------------------------------- --help


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", ("", *COMMANDS))
def test_help_fits_and_shows_flags_choices_and_model(command: str, width: int) -> None:
    code, text, lines = screen(width, *([command] if command else []), "--help")
    assert code == 0
    assert_fits(lines, width)
    assert "<bool>" not in text  # flags take no value
    usage = next(line for line in lines if "Usage:" in line)
    if command:
        assert usage.split()[-1] == "MODEL" and "{" not in usage, usage
    for choices in CHOICES.get(command, []):
        assert choices in text, choices
    # each example command of the docstring on one line, whole (hard newlines in the docstring broke them)
    doc = getattr(cli, command).__doc__ if command else ""
    for example in re.findall(r"lstm-inspect [^\n]+", doc or ""):
        assert any(line.strip() == example.strip() for line in lines), example


def test_help_wraps_prose_once() -> None:
    """export --help at 80 columns was hard-wrapped at about 95 and wrapped again by rich: lines of 1 to 20
    characters between full ones. Now every prose line but a paragraph's last is at least 60 characters."""
    _, text, lines = screen(80, "export", "--help")
    body = lines[lines.index(next(line for line in lines if "Write a runnable port" in line)):]
    body = body[:next(k for k, line in enumerate(body) if line.startswith("╭"))]
    paragraphs = "\n".join(line.rstrip() for line in body).split("\n\n")
    for para in paragraphs:
        rows = [r for r in para.splitlines() if r.strip()]
        if rows and not rows[0].strip().startswith("Example"):
            assert all(len(r.rstrip()) >= 60 for r in rows[:-1]), rows
    assert "  lstm-inspect export model.keras --to pytorch --out port/ --input x.npy" in text


def test_flags_are_flags_and_choices_are_the_librarys() -> None:
    from lstm_inspect.cli import DTYPES
    from lstm_inspect.dump import FORMATS, LAYOUTS
    from lstm_inspect.export import TARGETS

    assert CHOICES["export"] == ["|".join(TARGETS)]
    assert CHOICES["dump"] == ["|".join(LAYOUTS), "|".join(FORMATS)]
    assert CHOICES["forward"] == ["|".join(DTYPES)]
    code, _, _ = screen(80, "show", str(SAMPLES / "k3_single.keras"), "--json", "true")
    assert code == 2  # a flag takes no value, as its help now says
    code, _, _ = screen(80, "export", str(SAMPLES / "k3_single.keras"), "--to", "tflite", "-o", "x")
    assert code == 2


# ---------------------------------------------------------------- show


def keras_summary_names(path: Path) -> list[str]:
    return [m.name for m in load(path).layers if "/" not in m.name]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", SHOW_SAMPLES)
def test_show_screen(name: str, width: int) -> None:
    path = SAMPLES / name
    code, text, lines = screen(width, "show", str(path))
    assert code == 0, text
    assert_fits(lines, width)
    ckpt = load(path)
    assert_whole(keras_summary_names(path), lines)
    for d in ckpt.directions:
        assert_whole(list(d.parts), lines)
    total = sum(d.param_count for d in ckpt.directions) + sum(
        int(np.prod(a.shape)) for arrays in ckpt.layer_arrays.values() for a in arrays)
    assert f"total params: {total:,}" in text
    assert "layers: " not in text  # the arrow chain is gone
    two_inputs = "seq2seq" in name
    assert ("fed by" in text) is two_inputs
    if two_inputs:  # the decoder's row names the encoder's states it starts from
        assert_whole(["encoder_input", "decoder_input", "encoder[0][1]", "encoder[0][2]"], lines)
        assert sum(line.lstrip().startswith("input ") for line in lines) == 2


def test_show_inputs_say_what_they_take() -> None:
    _, text, _ = screen(80, "show", str(SAMPLES / "tfk_embedding_mask_zero_bilstm.h5"))
    with np.load(SAMPLES / "tfk_embedding_mask_zero_bilstm.io.npz") as d:
        steps = d["x"].shape[1]  # the input Keras was run on
    assert re.search(rf"\(None, {steps}\) = \(batch, steps\) of token ids in \[0, \d+\)", text), text
    _, text, _ = screen(80, "show", str(SAMPLES / "k3_seq2seq.keras"))
    with np.load(SAMPLES / "k3_seq2seq.io.npz") as d:
        shapes = [d[k].shape for k in sorted(d.files) if k.startswith("x")]
    for shape in shapes:
        assert f"(None, {shape[1]}, {shape[2]}) = (batch, steps, features)" in text


def test_show_explains_its_shorthands_only_when_it_uses_them() -> None:
    """`fed by` in Keras's NAME[call][output] notation and a `?` shape each get one legend line; a chain gets none."""
    _, text, _ = screen(120, "show", str(SAMPLES / "tfk_seq2seq.h5"))  # the decoder is fed the encoder's h and c
    assert "encoder[0][1]" in text and "fed by: NAME[k][j] is output j of NAME's call k" in text
    _, text, _ = screen(120, "show", str(SAMPLES / "k3_att_seq2seq_mha.keras"))  # a NotEqual op layer's shape
    assert "? a shape the config alone does not determine" in text
    _, text, _ = screen(120, "show", str(SAMPLES / "k3_gru.keras"))
    assert "fed by" not in text and "does not determine" not in text


def test_show_json_has_the_summary() -> None:
    code, text, _ = screen(200, "show", str(SAMPLES / "tfk_seq2seq.h5"), "--json")
    assert code == 0
    summary = json.loads(text)["summary"]
    assert [i["name"] for i in summary["inputs"]] == ["encoder_input", "decoder_input"]
    decoder = next(m for m in summary["layers"] if m["name"] == "decoder")
    assert decoder["inbound"] == ["decoder_input", "encoder[0][1]", "encoder[0][2]"]
    assert summary["is_chain"] is False


KERAS_SHAPES = """
import json, sys
gen, paths = sys.argv[1], sys.argv[2:]
if gen == "keras3":
    import keras
    load = lambda p: keras.saving.load_model(p, compile=False)
else:
    import tf_keras as keras
    load = lambda p: keras.models.load_model(p, compile=False)
out = {}
for p in paths:
    m = load(p)
    layers = {}
    for layer in m.layers:
        o = layer.output
        outs = o if isinstance(o, (list, tuple)) else [o]
        layers[layer.name] = {"shapes": [[None if n is None else int(n) for n in t.shape] for t in outs],
                              "params": int(layer.count_params())}
    trainable = sum(int(w.shape.num_elements() if hasattr(w.shape, "num_elements") else
                        __import__("math").prod(w.shape)) for w in m.trainable_weights)
    out[p] = {"layers": layers, "total": int(m.count_params()), "trainable": trainable}
print(json.dumps(out))
"""
KERAS_SAMPLES = {"keras3": ["k3_seq2seq.keras", "k3_gru.keras", "k3_embedding_mask_zero.keras", "k3_cnn_lstm.keras",
                            "k3_functional_state.keras", "k3_bidir_concat.keras", "k3_single.keras",
                            "k3_att_additive_causal.keras", "k3_att_mha_explicit_mask.keras", "k3_merge_none.keras"],
                 "tf_keras": ["tfk_seq2seq.h5", "tfk_embedding_mask_zero_bilstm.h5", "tfk_cnn_td_conv2d.h5",
                              "tfk_bidir_concat.h5", "tfk_gru.h5", "tfk_att_seq2seq_mha.h5",
                              "tfk_att_additive_causal.h5", "tfk_cnn_channels_first.h5", "tfk_tf_ops.h5",
                              "k231_cnn_td_conv2d.h5"]}
OPS = ("TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer")  # shapes lstm-inspect does not infer: "?"


@pytest.fixture(scope="module")
def keras_views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Keras's own layer.output shapes and count_params of each sample, one subprocess per generation at once."""
    pytest.importorskip("keras", reason="Keras 3 reads the .keras samples")
    pytest.importorskip("tf_keras", reason="tf_keras reads the legacy .h5 samples")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    procs = [subprocess.Popen([sys.executable, "-c", KERAS_SHAPES, gen, *(str(SAMPLES / n) for n in names)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for gen, names in KERAS_SAMPLES.items()]
    views: dict[str, Any] = {}
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        views.update({Path(p).name: v for p, v in json.loads(out.splitlines()[-1]).items()})
    return views


@pytest.mark.parametrize("name", [n for names in KERAS_SAMPLES.values() for n in names])
def test_show_shapes_and_params_are_keras_own(name: str, keras_views: dict[str, Any]) -> None:
    """show --json's summary against Keras's model.layers[*].output shapes and count_params() of the same file."""
    keras = keras_views[name]
    code, text, _ = screen(200, "show", str(SAMPLES / name), "--json")
    assert code == 0
    summary = json.loads(text)["summary"]
    ours = {m["name"]: m for m in summary["layers"]}
    assert set(keras["layers"]) <= set(ours)
    has_ops = any(m["class_name"].startswith(OPS) for m in summary["layers"])
    for layer, view in keras["layers"].items():
        # an op layer's shape, and what follows from it, is "?" (never a wrong shape); elsewhere every shape is known
        if ours[layer]["output_shapes"] != [None] or not has_ops:
            assert ours[layer]["output_shapes"] == view["shapes"], layer
        assert ours[layer]["params"] == view["params"], layer
    assert summary["total_params"] == keras["total"]
    assert summary["trainable_params"] == keras["trainable"]
    # and the table shows them: Keras's shapes as Keras prints them, its total
    _, text, _ = screen(120, "show", str(SAMPLES / name))
    for layer, view in keras["layers"].items():
        for shape, known in zip(view["shapes"], ours[layer]["output_shapes"]):
            assert known is None or "(" + ", ".join(map(str, shape)) + ")" in text
    assert f"total params: {keras['total']:,}" in text


# ---------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def keras_runs() -> None:
    pytest.importorskip("keras", reason="verify runs Keras")


def bar_rows(lines: list[str]) -> list[str]:
    """The lines that hold bars (the legend names the glyphs too, after a colon: not a bar row)."""
    return [line for line in lines if re.search(f"[{SPARK}]{{3,}}", line)]


def assert_verify_screen(text: str, lines: list[str], width: int, names: list[str], sequences: int) -> None:
    assert_fits(lines, width)
    assert_whole(names, lines)
    rows = bar_rows(lines)
    assert len(rows) == sequences, rows  # one row of bars per sequence output, never wrapped
    legend = next(line for line in lines if "one log scale for every row" in line or "log scale" in line)
    assert legend
    assert "(atol)" in text and "≤" in text  # the scale is stated, with the tolerance on it
    header = next((line for line in lines if "max |Δ|" in line and "max rel" in line and "ok" in line.split()), None)
    assert header is not None or "within tolerance" in text or "past tolerance" in text  # ✓ and ✗ are labelled


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_screen_passing_100_steps(width: int, tmp_path: Path, keras_runs: None) -> None:
    path = SAMPLES / "k3_bidir_concat.keras"
    direction = load(path).directions[0]
    x = np.random.default_rng(0).normal(size=(2, 100, direction.input_dim)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, text, lines = screen(width, "verify", str(path), "--layer", direction.name, "-i", str(tmp_path / "x.npy"))
    assert code == 0, text
    assert_verify_screen(text, lines, width, [direction.name], 1)
    (row,) = bar_rows(lines)
    bars = re.findall(f"[{SPARK}]+", row)[-1]
    per = int(m.group(1)) if (m := re.search(r"\|Δ\| per (\d+) steps", text)) else 1
    assert len(bars) == -(-100 // per) and len(bars) <= width  # 100 steps binned to fit
    # passing: no bar reaches the top of the scale, which is atol (the largest error is below it)
    assert "█" not in bars and "█ ≥ 1.0e-05 (atol)" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_screen_whole_model(width: int, keras_runs: None) -> None:
    code, text, lines = screen(width, "verify", str(SAMPLES / "k3_seq2seq.keras"))
    assert code == 0, text
    assert_verify_screen(text, lines, width, ["layer encoder", "layer decoder", "output_0"], 2)


@pytest.mark.parametrize("width", WIDTHS)
def test_verify_screen_failing(width: int, tmp_path: Path, keras_runs: None) -> None:
    """THEIRS off by 0.01 at the last step: the bar's last character tops the shared scale, the tolerance's glyph
    is named in the legend, and the failing output is marked ✗."""
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as d:
        x, y = d["x"], d["y"].copy()
    y[:, -1, 2] += 0.01
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", y)
    code, text, lines = screen(width, "verify", str(path), "-i", str(tmp_path / "x.npy"), "--against",
                               str(tmp_path / "theirs.npy"))
    assert code == 1, text
    assert_verify_screen(text, lines, width, ["output_0"], 1)
    (row,) = bar_rows(lines)
    bars = re.findall(f"[{SPARK}]+", row)[-1]
    assert len(bars) == x.shape[1] and bars[-1] == "█" and "█" not in bars[:-1]
    joined = " ".join(line.strip() for line in lines)  # the legend may wrap at 80 columns (between words)
    assert "✗" in text and re.search(r"[▁▂▃▄▅▆▇] ≈ 1\.0e-05 \(atol\), █ ≥ 1\.0e-02 \(the largest \|Δ\|\)", joined), text


# ---------------------------------------------------------------- stats


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ("k3_gru.keras", "tfk_bidir_concat.h5"))
def test_stats_screen(name: str, width: int) -> None:
    code, text, lines = screen(width, "stats", str(SAMPLES / name))
    assert code == 0, text
    assert_fits(lines, width)
    ckpt = load(SAMPLES / name)
    for d in ckpt.directions:
        # each title whole on one line (a table's title wrapped at the table's width, ~55 columns)
        assert any(re.fullmatch(rf"{re.escape(d.name)}: activations over \d+ \(sample, step\) pairs", line.strip())
                   for line in lines), d.name
        assert any(line.strip().startswith(f"{d.name}: weights") for line in lines)
