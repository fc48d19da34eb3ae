"""`lstm-inspect show`: the right layers, N_i, N_c and settings, with no TensorFlow import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    REALWORLD,
    ROOT,
    SAMPLES,
    gate_names,
    keras_refs,
    realworld_checkpoints,
    run_cli,
    sample_checkpoints,
    show_json,
    stem,
)

LAYER_KEYS = {"name", "kind", "direction", "input_dim", "units", "activation", "recurrent_activation", "use_bias",
              "return_sequences", "go_backwards", "gates", "shapes_ok"}


def _expected_format(path: Path) -> str:
    if path.suffix == ".keras":
        return "keras3"
    if path.name.endswith(".weights.h5"):
        return "keras3-weights"
    if ".weights_only." in path.name:
        return "legacy-weights-h5"
    return "legacy-h5"


def _assert_matches_refs(doc: dict, refs: dict) -> None:
    assert [layer["name"] for layer in doc["layers"]] == list(refs)  # Keras's own layer order
    for layer in doc["layers"]:
        assert set(layer) >= LAYER_KEYS
        ref = refs[layer["name"]]
        n_i, n_c = ref["kernel"].shape[0], ref["recurrent_kernel"].shape[0]
        assert (layer["input_dim"], layer["units"]) == (n_i, n_c)
        assert layer["gates"] == {g: {"shape": [n_c, n_i + n_c]} for g in gate_names(ref)}
        assert layer["shapes_ok"] is True


@pytest.mark.parametrize("path", sample_checkpoints(), ids=lambda p: p.name)
def test_show_json_on_samples(path: Path) -> None:
    doc = show_json(path)
    assert doc["file"] == str(path)
    assert doc["format"] == _expected_format(path)
    _assert_matches_refs(doc, keras_refs(SAMPLES / f"{stem(path)}.ref.npz"))


@pytest.mark.parametrize("path", realworld_checkpoints(with_weights=True), ids=lambda p: p.name)
def test_show_json_on_realworld(path: Path, realworld_refs: dict) -> None:
    doc = show_json(path)
    catalog = {e["file"]: e for e in json.loads((REALWORLD / "catalog.json").read_text())}
    if path.name in catalog and catalog[path.name].get("keras_version"):
        assert doc["keras_version"] == catalog[path.name]["keras_version"]
    _assert_matches_refs(doc, realworld_refs[path.name])


def test_show_on_a_model_saved_before_it_was_built() -> None:
    path = REALWORLD / "next_word_embedding_keras313.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    doc = show_json(path)
    (layer,) = doc["layers"]
    # units from the LSTM config (128), N_i from the Embedding feeding it (output_dim 50)
    assert (layer["units"], layer["input_dim"], layer["weights_stored"]) == (128, 50, False)
    assert any("no weights" in n for n in doc["notes"])


SETTINGS = {
    # sample: {direction: (recurrent_activation, hard_sigmoid variant, go_backwards, return_sequences, use_bias)}
    "k3_hard_sigmoid.keras": {"lstm": ("hard_sigmoid", "keras3", False, False, True)},
    "k3_hard_sigmoid.h5": {"lstm": ("hard_sigmoid", "keras3", False, False, True)},
    "tfk_stacked_hard_sigmoid.h5": {"lstm": ("hard_sigmoid", "keras2", False, True, True),
                                    "lstm_1": ("hard_sigmoid", "keras2", False, False, True)},
    "k3_go_backwards.keras": {"lstm": ("sigmoid", None, True, True, True)},
    "tfk_go_backwards.h5": {"lstm": ("sigmoid", None, True, True, True)},
    "k3_no_bias.keras": {"lstm": ("sigmoid", None, False, True, False)},
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_show_reports_settings(name: str) -> None:
    """The settings each sample was built with in generate.py."""
    doc = show_json(SAMPLES / name)
    got = [(d["recurrent_activation"], d["hard_sigmoid"], d["go_backwards"], d["return_sequences"], d["use_bias"])
           for d in doc["layers"]]
    assert got == list(SETTINGS[name].values())


def test_bidirectional_directions_and_merge_modes() -> None:
    doc = show_json(SAMPLES / "tfk_bidir_concat.h5")
    assert [(d["direction"], d["go_backwards"], d["merge_mode"]) for d in doc["layers"]] == [
        ("forward", False, "concat"), ("backward", True, "concat"), ("forward", False, "ave"),
        ("backward", True, "ave")]
    # the second Bidirectional is fed the first one's concatenation: 2 x 5 features
    assert doc["layers"][2]["input_dim"] == 10 == doc["layers"][2]["expected_input_dim"]
    assert [d["merge_mode"] for d in show_json(SAMPLES / "k3_bidir_sum.keras")["layers"]] == ["sum", "sum"]


def test_return_state_and_cudnn_flags() -> None:
    assert show_json(SAMPLES / "k3_functional_state.keras")["layers"][0]["return_state"] is True
    (cudnn,) = show_json(SAMPLES / "tfk_cudnn.h5")["layers"]
    assert (cudnn["kind"], cudnn["storage"], cudnn["recurrent_activation"]) == ("CuDNNLSTM", "cudnn", "sigmoid")


def test_weights_only_files_say_settings_are_defaults() -> None:
    for name in ("k3_single.weights.h5", "tfk_single.weights_only.h5"):
        doc = show_json(SAMPLES / name)
        assert doc["settings_from"] == "defaults" and doc["notes"]
        text = run_cli("show", str(SAMPLES / name)).stdout
        assert "no architecture" in text


def test_table_lists_layers_and_gate_shapes() -> None:
    r = run_cli("show", str(SAMPLES / "k3_stacked.keras"))
    assert r.returncode == 0, r.stderr
    for text in ("keras3", "3.15.1", "lstm_2", "lstm_3", "lstm_4", "Dense", "8×11 ✓✓✓✓", "6×14 ✓✓✓✓", "4×10 ✓✓✓✓"):
        assert text in r.stdout


def test_show_never_imports_tensorflow() -> None:
    """In a fresh interpreter: show on every sample, then look at sys.modules."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lstm_inspect.cli import app\n"
        "codes = {CliRunner().invoke(app, ['show', f]).exit_code for f in sys.argv[1:]}\n"
        "print(sorted(codes), [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules])\n"
    )
    files = [str(p) for p in sample_checkpoints()]
    out = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0] []"


def test_version_and_help_on_every_command() -> None:
    from lstm_inspect.base import __version__

    r = run_cli("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = run_cli("--help")
    assert r.returncode == 0 and "show" in r.stdout
    r = run_cli("show", "--help")
    assert r.returncode == 0 and "--json" in r.stdout and "Example" in r.stdout


def test_demo_sample_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    sample = next(line.split(":=")[1].strip() for line in makefile.splitlines() if line.startswith("SAMPLE"))
    assert (ROOT / sample).exists()


def test_weights_only_files_count_the_stored_parameters() -> None:
    """No architecture, so no layer table; the total is the size of every array Keras's get_weights() gave."""
    for name in ("k3_single.weights.h5", "tfk_single.weights_only.h5"):
        doc = show_json(SAMPLES / name)
        refs = keras_refs(SAMPLES / f"{stem(SAMPLES / name)}.ref.npz")
        total = sum(a.size for ref in refs.values() for a in ref.values())
        assert (doc["summary"]["layers"], doc["summary"]["total_params"]) == ([], total)
        assert f"total params: {total:,}" in run_cli("show", str(SAMPLES / name)).stdout
