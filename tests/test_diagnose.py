"""`diagnose` names the porting mistake planted in THEIRS first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstm_inspect
from conftest import REALWORLD, SAMPLES, run_cli
from lstm_inspect.diagnose import diagnose
from lstm_inspect.engine import activation_fn, hard_sigmoid_keras3, lstm_forward
from lstm_inspect.gates import LSTMWeights
from lstm_inspect.network import Network, Variant


def _blocks(a: np.ndarray, u: int) -> list[np.ndarray]:
    return [a[..., k * u:(k + 1) * u] for k in range(4)]


def _as_order(w: LSTMWeights, order: list[int]) -> LSTMWeights:
    """A port that takes Keras's block order[k] as gate k (i, f, c, o)."""
    u = w.units

    def re(a: np.ndarray) -> np.ndarray:
        b = _blocks(a, u)
        return np.concatenate([b[k] for k in order], axis=-1)

    return LSTMWeights(re(w.kernel), re(w.recurrent_kernel), re(w.bias))


def _x(d: lstm_inspect.LSTMDirection, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, 8, d.input_dim)).astype(np.float32)


HS2 = activation_fn("hard_sigmoid", "keras2")
LAYER_CASES = {
    # mistake expected first: THEIRS made here with the engine's building blocks
    "ONNX's gate order": lambda w, x: lstm_forward(x, _as_order(w, [0, 2, 3, 1]), recurrent_activation=HS2),
    "c and o swapped": lambda w, x: lstm_forward(x, _as_order(w, [0, 1, 3, 2]), recurrent_activation=HS2),
    "hard_sigmoid as clip(x/6": lambda w, x: lstm_forward(x, w, recurrent_activation=hard_sigmoid_keras3),
    "sigmoid where the model uses hard_sigmoid": lambda w, x: lstm_forward(x, w),
    "the bias left out": lambda w, x: lstm_forward(x, LSTMWeights(w.kernel, w.recurrent_kernel, None),
                                                   recurrent_activation=HS2),
    "the recurrent kernel transposed": lambda w, x: lstm_forward(x, LSTMWeights(
        w.kernel, np.concatenate([b.T for b in _blocks(w.recurrent_kernel, w.units)], axis=1), w.bias),
        recurrent_activation=HS2),
    "tanh left off c": lambda w, x: lstm_forward(x, w, recurrent_activation=HS2,
                                                 cell_activation=activation_fn("linear")),
    "sigmoid on the cell candidate": lambda w, x: lstm_forward(x, w, recurrent_activation=HS2,
                                                               activation=activation_fn("sigmoid"),
                                                               cell_activation=activation_fn("tanh")),
    "float16 arithmetic": lambda w, x: lstm_forward(x, w, recurrent_activation=HS2, dtype=np.float16),
}


@pytest.mark.parametrize("mistake", sorted(LAYER_CASES))
def test_planted_mistake_in_one_layer_is_named_first(mistake: str) -> None:
    ckpt = lstm_inspect.load(SAMPLES / "tfk_stacked_hard_sigmoid.h5")
    d = ckpt.layer("lstm_1")
    x = _x(d)
    theirs = LAYER_CASES[mistake](d.weights(), x).outputs.astype(np.float32)
    result = diagnose(ckpt, [x], [theirs], layer="lstm_1")
    assert not result.matches and result.found, [h.to_dict() for h in result.ranked[:3]]
    assert mistake in result.found[0].name


def test_square_layer_mistakes_on_a_real_file() -> None:
    """N_i = N_c: a transposed kernel and swapped kernels, on lstm_1 (50 → 50) of a real model."""
    path = REALWORLD / "stock_stacked3_keras210.h5"
    if not path.exists():
        pytest.skip("../shared/realworld is not beside this clone")
    ckpt = lstm_inspect.load(path)
    d = ckpt.layer("lstm_1")
    w, x = d.weights(), _x(d)
    transposed = LSTMWeights(np.concatenate([b.T for b in _blocks(w.kernel, w.units)], axis=1), w.recurrent_kernel, w.bias)
    for weights, expected in ((transposed, "the kernel transposed"),
                              (LSTMWeights(w.recurrent_kernel, w.kernel, w.bias), "kernels swapped")):
        theirs = lstm_forward(x, weights).outputs
        result = diagnose(ckpt, [x], [theirs], layer="lstm_1")
        assert expected in result.found[0].name


WHOLE_MODEL_CASES = [
    ("tfk_cudnn.h5", "CuDNNLSTM's recurrent bias dropped", None),
    ("tfk_cudnn.h5", "CuDNNLSTM's recurrent bias added twice", None),
    ("tfk_bidir_concat.h5", "the backward output not flipped back", Variant(backward_output_not_flipped=True)),
    ("tfk_go_backwards.h5", "go_backwards ignored", Variant(ignore_go_backwards=True)),
    ("tfk_masking.h5", "masked steps not skipped", Variant(ignore_mask=True)),
    ("tfk_masking.h5", "zeros output at masked steps", Variant(zero_output_for_mask=True)),
    ("k3_stacked.keras", "bfloat16 weights", None),
]


@pytest.mark.parametrize("name,mistake,variant", WHOLE_MODEL_CASES, ids=[m for _, m, _ in WHOLE_MODEL_CASES])
def test_planted_mistake_in_a_whole_model_is_named_first(name: str, mistake: str, variant: Variant | None) -> None:
    from lstm_inspect.diagnose import mistakes

    ckpt = lstm_inspect.load(SAMPLES / name)
    if variant is None:  # the mistake's own variant, as a port that makes it would compute
        variant = next(m.variant for m in mistakes(ckpt) if mistake in m.name)
    with np.load(SAMPLES / f"{name.split('.')[0]}.io.npz") as io:
        x = io["x"]
    theirs = Network(ckpt, variant=variant).run([x])
    result = diagnose(ckpt, [x], theirs)
    assert result.found and mistake in result.found[0].name, [h.to_dict() for h in result.ranked[:3]]


def test_cli_exit_codes_and_divergence(tmp_path: Path) -> None:
    path = SAMPLES / "k3_return_sequences.keras"
    with np.load(SAMPLES / "k3_return_sequences.io.npz") as io:
        x, y = io["x"], io["y"]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "right.npy", y)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "right.npy"))
    assert r.returncode == 0 and "match" in r.stdout
    odd = y.copy()
    odd[:, 4:] += np.linspace(0, 0.05, odd.shape[1] - 4)[None, :, None]  # a drift no known mistake makes
    np.save(tmp_path / "odd.npy", odd)
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "odd.npy"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["diagnosed"] == [] and "step 5" in doc["divergence"]
    assert "recurrence" in doc["divergence"]
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    r = run_cli("diagnose", str(path), "-i", str(tmp_path / "x.npy"), "--against", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "shape" in r.stderr
