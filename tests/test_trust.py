"""Answers that look sure must be true: bugs are reported as bugs, shapes declared on later layers do not
mislead, the last step alone is compared as the last step, outputs land where asked, `show` reads at 80 columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lstm_inspect
from lstm_inspect.cli import app

from conftest import REALWORLD, SAMPLES, realworld_checkpoints, run_cli, sample_checkpoints

# ---------------------------------------------------------------- a bug of ours is not a damaged file


def test_an_injected_bug_exits_3_and_says_it_is_a_bug(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A KeyError raised by our own code while the weights file is open: exit 3, never 'damaged file' (exit 2)."""
    from lstm_inspect.model.cells import lstm

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug in the shape code")

    monkeypatch.setattr(lstm.LSTM, "check_shapes", broken)
    result = CliRunner().invoke(app, ["show", str(SAMPLES / "k3_single.keras")])
    assert result.exit_code == 3, result.stderr
    assert "internal error, a bug in lstm-inspect" in result.stderr and "LSTM_INSPECT_DEBUG=1" in result.stderr
    assert "could not be read" not in result.stderr and "damaged" not in result.stderr
    monkeypatch.setattr(lstm.LSTM, "weights_from", broken)
    monkeypatch.undo()
    monkeypatch.setattr(lstm.LSTM, "weights_from", broken)
    result = CliRunner().invoke(app, ["dump", str(SAMPLES / "tfk_single.h5"), "-o", str(tmp_path / "d")])
    assert result.exit_code == 3 and "a bug in lstm-inspect" in result.stderr and not (tmp_path / "d").exists()


def test_debug_variable_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_inspect.model.cells import lstm

    monkeypatch.setattr(lstm.LSTM, "check_shapes", lambda *a, **k: {}["boom"])
    monkeypatch.setenv("LSTM_INSPECT_DEBUG", "1")
    result = CliRunner().invoke(app, ["show", str(SAMPLES / "k3_single.keras")])
    assert isinstance(result.exception, KeyError)


def test_help_documents_exit_code_3() -> None:
    r = run_cli("--help")
    assert "3 a bug in lstm-inspect" in " ".join(r.stdout.split())


# ---------------------------------------------------------------- what feeds a layer comes from the graph


@pytest.mark.parametrize("name", ["tfk_declared_shapes.h5", "k3_declared_shapes.keras"])
def test_input_shape_on_a_later_layer_is_ignored_as_keras_ignores_it(name: str) -> None:
    doc = json.loads(run_cli("show", str(SAMPLES / name), "--json").stdout)
    second = doc["layers"][1]
    assert (second["input_dim"], second["expected_input_dim"], second["shapes_ok"]) == (5, 5, True)
    with np.load(SAMPLES / f"{name.split('.')[0]}.io.npz") as io:
        out = lstm_inspect.load(SAMPLES / name).forward(io["x"])
        assert np.max(np.abs(out - io["y"])) <= 1e-5


def test_no_false_cross_on_any_sample_or_real_file() -> None:
    """`show` exits 0 with every shape checked on every file a Keras wrote."""
    files = [p for p in sample_checkpoints() + realworld_checkpoints() if "no_lstm" not in p.name]
    code = ("import sys, json\n"
            "from typer.testing import CliRunner\n"
            "from lstm_inspect.cli import app\n"
            "bad = [f for f in sys.argv[1:] if CliRunner().invoke(app, ['show', f]).exit_code != 0]\n"
            "print(json.dumps(bad))\n")
    out = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True, timeout=300)
    assert json.loads(out.stdout) == [], out.stderr


# ---------------------------------------------------------------- the last step alone


@pytest.mark.parametrize("command", ["verify", "diagnose"])
def test_layer_output_of_forward_is_accepted_by_verify_and_diagnose(command: str, tmp_path: Path) -> None:
    """forward --layer on a return_sequences=False layer writes (batch, N_c); verify and diagnose compare that."""
    model = SAMPLES / "tfk_single.h5"
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = run_cli("forward", str(model), "--layer", "lstm", "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "h.npy"))
    assert r.returncode == 0 and np.load(tmp_path / "h.npy").shape == (3, 5)
    r = run_cli(command, str(model), "--layer", "lstm", "-i", str(tmp_path / "x.npy"), "--against",
                str(tmp_path / "h.npy"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    names = [o["name"] for o in doc["outputs"]] if command == "verify" else [c["name"] for c in doc["against_engine"]]
    assert any("last step" in n for n in names)



@pytest.mark.parametrize("wrong", ["right", "hard_sigmoid", "first step", "off by 1e-3"])
def test_verify_layer_against_a_wrong_last_step_exits_1(wrong: str, tmp_path: Path) -> None:
    """verify --layer L --against THEIRS, THEIRS the last step alone (batch, N_c) computed by the tests' own LSTM
    from Keras's weights: the right one exits 0, a wrong one exits 1 and says where."""
    import reference_rnn as ref
    from conftest import keras_refs

    model = SAMPLES / "tfk_single.h5"  # LSTM(5), tanh/sigmoid, return_sequences=False
    w = keras_refs(SAMPLES / "tfk_single.ref.npz")["lstm"]
    x = np.random.default_rng(0).normal(size=(3, 6, 3)).astype(np.float32)
    rec = ref.hard_sigmoid_keras2 if wrong == "hard_sigmoid" else ref.sigmoid
    seq, _ = ref.lstm(x, w["kernel"], w["recurrent_kernel"], w["bias"], recurrent_activation=rec)
    theirs = {"right": seq[:, -1], "hard_sigmoid": seq[:, -1], "first step": seq[:, 0],
              "off by 1e-3": seq[:, -1] + 1e-3}[wrong].astype(np.float32)
    assert theirs.shape == (3, 5)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "theirs.npy", theirs)
    r = CliRunner().invoke(app, ["verify", str(model), "--layer", "lstm", "-i", str(tmp_path / "x.npy"),
                                 "--against", str(tmp_path / "theirs.npy"), "--json"])
    doc = json.loads(r.stdout)
    (out,) = doc["outputs"]
    assert "last step" in out["name"] and out["shape"] == [3, 5]
    if wrong == "right":
        assert r.exit_code == 0 and doc["ok"] is True and out["max_abs_error"] <= 1e-5, r.stdout
    else:
        assert r.exit_code == 1 and doc["ok"] is False and out["ok"] is False, r.stdout
        assert out["max_abs_error"] >= 1e-3 - 1e-6 and out["first_past_tolerance"] is not None

# ---------------------------------------------------------------- outputs land where asked


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    with np.load(SAMPLES / "k3_single.io.npz") as io:
        np.save(tmp_path / "x.npy", io["x"])
    r = run_cli("dump", str(SAMPLES / "k3_single.keras"), "--out", str(tmp_path / "a" / "b"))
    assert r.returncode == 0 and (tmp_path / "a" / "b" / "manifest.json").exists()
    r = run_cli("forward", str(SAMPLES / "k3_single.keras"), "-i", str(tmp_path / "x.npy"),
                "-o", str(tmp_path / "c" / "d" / "y.npy"))
    assert r.returncode == 0 and (tmp_path / "c" / "d" / "y.npy").exists()


# ---------------------------------------------------------------- show at 80 and 120 columns


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", ["tfk_bidir_concat.h5", "k3_seq2seq_bidirectional.keras", "tfk_cudnn.h5",
                                  "k3_hard_sigmoid.keras", "tfk_tf_ops.h5"])
def test_show_reads_cleanly_at_80_and_120_columns(name: str, columns: int) -> None:
    env = dict(os.environ, COLUMNS=str(columns))
    exe = Path(sys.executable).with_name("lstm-inspect")
    out = subprocess.run([str(exe), "show", str(SAMPLES / name)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), [line for line in lines if len(line) > columns]
    text = out.stdout
    ckpt = lstm_inspect.load(SAMPLES / name)
    for d in ckpt.directions:
        # every direction's name and activations appear unbroken (names wrap only at '/')
        for part in d.name.split("/"):
            assert part in text, part
        assert d.settings.activation in text
        if d.settings.recurrent_activation == "hard_sigmoid":
            assert "hard_sigmoid" in text
    assert "\x1b" not in text and "\\u" not in text  # not a terminal: no escape sequences, nothing escaped


def test_show_real_file_at_80_columns() -> None:
    path = REALWORLD / "emoji_bilstm_keras210.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    env = dict(os.environ, COLUMNS="80")
    exe = Path(sys.executable).with_name("lstm-inspect")
    out = subprocess.run([str(exe), "show", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and max(len(line) for line in out.stdout.splitlines()) <= 80
