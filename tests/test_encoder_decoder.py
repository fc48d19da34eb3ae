"""Encoder-decoders: LSTMs that start from another layer's final h and c."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lstm_inspect

from conftest import REALWORLD, SAMPLES, run_cli, show_json

STARTS = {
    "k3_seq2seq.keras": {"decoder": ["encoder h", "encoder c"]},
    "tfk_seq2seq.h5": {"decoder": ["encoder h", "encoder c"]},
    "k3_seq2seq_embedding.keras": {"decoder": ["encoder h", "encoder c"]},
    "tfk_seq2seq_embedding.h5": {"decoder": ["encoder h", "encoder c"]},
    "k3_seq2seq_bidirectional.keras": {"forward": ["encoder h (forward)", "encoder c (forward)"],
                                       "backward": ["encoder h (backward)", "encoder c (backward)"]},
    "tfk_seq2seq_bidirectional.h5": {"forward": ["encoder h (forward)", "encoder c (forward)"],
                                     "backward": ["encoder h (backward)", "encoder c (backward)"]},
}


@pytest.mark.parametrize("name", sorted(STARTS))
def test_show_names_where_each_state_comes_from(name: str) -> None:
    doc = show_json(SAMPLES / name)
    got = {}
    for d in doc["layers"]:
        if d["initial_state_from"]:
            key = d["name"] if "/" not in d["name"] else d["direction"]
            got[key] = d["initial_state_from"]
    assert got == STARTS[name]
    assert "starts from encoder" in run_cli("show", str(SAMPLES / name)).stdout


def test_show_on_the_real_translation_model() -> None:
    path = REALWORLD / "translation_seq2seq_keras224.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    decoder = next(d for d in show_json(path)["layers"] if d["name"] == "decoder_lstm")
    assert decoder["initial_state_from"] == ["encoder_lstm h", "encoder_lstm c"]


def test_decoder_alone_from_the_encoder_states(tmp_path: Path) -> None:
    """trace the encoder, take its last h and c, run the decoder alone from them with --initial-state,
    put Keras's Dense + softmax on top: Keras's own output."""
    with np.load(SAMPLES / "tfk_seq2seq.io.npz") as io:
        x0, x1, y = io["x0"], io["x1"], io["y"]
    np.save(tmp_path / "enc.npy", x0)
    np.save(tmp_path / "dec.npy", x1)
    model = SAMPLES / "tfk_seq2seq.h5"
    assert run_cli("trace", str(model), "--layer", "encoder", "-i", str(tmp_path / "enc.npy"),
                   "-o", str(tmp_path / "enc.npz")).returncode == 0
    with np.load(tmp_path / "enc.npz") as t:
        np.save(tmp_path / "h.npy", t["encoder/h"][:, -1])
        np.save(tmp_path / "c.npy", t["encoder/c"][:, -1])
    r = run_cli("forward", str(model), "--layer", "decoder", "-i", str(tmp_path / "dec.npy"),
                "--initial-state", str(tmp_path / "h.npy"), "--initial-state", str(tmp_path / "c.npy"),
                "-o", str(tmp_path / "seq.npy"))
    assert r.returncode == 0, r.stderr
    kernel, bias = lstm_inspect.load(model).read_layer("next")
    logits = np.load(tmp_path / "seq.npy") @ kernel + bias
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert np.max(np.abs(probs - y)) <= 1e-5
    # from zeros instead, the decoder gives something else
    r = run_cli("forward", str(model), "--layer", "decoder", "-i", str(tmp_path / "dec.npy"), "-o",
                str(tmp_path / "zero.npy"))
    assert r.returncode == 0 and np.max(np.abs(np.load(tmp_path / "zero.npy") - np.load(tmp_path / "seq.npy"))) > 1e-3


def test_initial_state_of_the_wrong_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "dec.npy", np.zeros((4, 5, 3), np.float32))
    np.save(tmp_path / "h.npy", np.zeros((4, 7), np.float32))
    r = run_cli("forward", str(SAMPLES / "tfk_seq2seq.h5"), "--layer", "decoder", "-i", str(tmp_path / "dec.npy"),
                "--initial-state", str(tmp_path / "h.npy"), "--initial-state", str(tmp_path / "h.npy"),
                "-o", str(tmp_path / "o.npy"))
    assert r.returncode == 2 and "initial state h" in r.stderr and "(4, 6)" in r.stderr


def test_keras3_drops_the_decoder_mask_and_tf_keras_keeps_it() -> None:
    """Keras 3 fills in an implicit mask only for a single-tensor call; tf_keras masks the decoder.
    Both samples come with Keras's own outputs, and the engine matches each."""
    for name in ("k3_seq2seq_embedding", "tfk_seq2seq_embedding"):
        with np.load(SAMPLES / f"{name}.io.npz") as io:
            ckpt = lstm_inspect.load(next(SAMPLES.glob(f"{name}.*5")) if name.startswith("tfk")
                                     else SAMPLES / f"{name}.keras")
            y = ckpt.forward([io["x0"], io["x1"]])
            assert np.max(np.abs(y - io["y"])) <= 1e-5
            assert (io["x1"] == 0).any()  # the decoder input really is padded
