"""One resource budget for everything a file can make the engine build (issue 21, §2).

Each case is a file of a few kilobytes built here (a legacy .h5 written with h5py, its architecture a JSON
config as tf.keras writes it) that asked the engine for gigabytes or minutes and exited 0: RepeatVector(2e8),
RepeatVector(1e7) feeding an LSTM, rfft/irfft with fft_length 2^25 (TFOpLambda and raw RFFT/IRFFT ops), an AddV2
of two constants broadcast to N×N, Attention after UpSampling1D, and an UpSampling1D followed by a chain of
Activations (every layer's output was kept for the whole run). Each runs through the installed command in a
subprocess; its CPU time and peak RSS are read from the kernel (`os.wait4`), so what is measured is the command
alone. A refusal is exit 2 and one line naming the layer, the size and the option; a legitimate model still runs
(the largest real checkpoint, a big sample, against Keras's own outputs), and the options let a refused case run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from conftest import REALWORLD, SAMPLES

LSTM_SOURCE = SAMPLES / "tfk_single.h5"  # tf.keras 2.x Sequential: Input (7, 3) -> LSTM(5)
CPU_SECONDS, RSS_MB = 5.0, 400  # "refused in under a few seconds and a few hundred MB"


# ---------------------------------------------------------------- building the files


def _lstm_entry() -> dict[str, Any]:
    with h5py.File(LSTM_SOURCE) as f:
        return json.loads(f.attrs["model_config"])["config"]["layers"][1]


def _input(shape: list[Any], name: str = "x") -> dict[str, Any]:
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"batch_input_shape": shape, "dtype": "float32", "name": name}}


def legacy_h5(path: Path, layers: list[dict[str, Any]], functional: dict[str, Any] | None = None,
              keras_version: str = "2.3.0-tf") -> Path:
    """A legacy full-model .h5 as tf.keras writes it: the architecture in `model_config`, one weight group per
    layer (empty but for an LSTM named "lstm", whose arrays come from LSTM_SOURCE)."""
    config = ({"class_name": "Functional", "config": {"name": "f", "layers": layers, **functional}}
              if functional is not None else {"class_name": "Sequential", "config": {"name": "s", "layers": layers}})
    with h5py.File(path, "w") as f, h5py.File(LSTM_SOURCE) as src:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = keras_version
        f.attrs["backend"] = "tensorflow"
        weights = f.create_group("model_weights")
        names = [entry["config"]["name"] for entry in layers if entry["class_name"] != "InputLayer"]
        weights.attrs["layer_names"] = [n.encode() for n in names]
        weights.attrs["keras_version"] = keras_version
        weights.attrs["backend"] = "tensorflow"
        for name in names:
            if name == "lstm":
                src.copy(src["model_weights/lstm"], weights, "lstm")
            else:
                weights.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
    return path


def _layer(class_name: str, name: str, inbound: list[Any] | None = None, **config: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"class_name": class_name, "name": name, "config": {"name": name, **config}}
    if inbound is not None:
        entry["inbound_nodes"] = inbound
    return entry


def functional(path: Path, layers: list[dict[str, Any]], outputs: list[str], keras_version: str = "2.3.0-tf") -> Path:
    """A functional model whose input "signal" (batch, steps, 3) also feeds the LSTM (every command wants one
    recurrent layer), the LSTM's output the model's last."""
    lstm = {**_lstm_entry(), "name": "lstm", "inbound_nodes": [[["signal", 0, 0, {}]]]}
    graph = {"input_layers": [["signal", 0, 0]], "output_layers": [[n, 0, 0] for n in [*outputs, "lstm"]]}
    return legacy_h5(path, [*layers, lstm], graph, keras_version)


def repeat_vector(tmp: Path, n: int, lstm: bool = True) -> Path:
    layers = [_input([None, 3]), _layer("RepeatVector", "rv", n=n)] + ([_lstm_entry()] if lstm else [])
    return legacy_h5(tmp / f"repeat_{n}.h5", layers)


def fft_model(tmp: Path, raw: bool, inverse: bool, length: int = 1 << 25) -> Path:
    """signal.rfft / signal.irfft (TFOpLambda, tf.keras 2.4+) or the raw RFFT / IRFFT op (TensorFlowOpLayer,
    tf.keras 2.2-2.3) with fft_length `length`."""
    op = ("IRFFT" if inverse else "RFFT") if raw else ("signal.irfft" if inverse else "signal.rfft")
    layers: list[dict[str, Any]] = [_input([None, 7, 3], "signal")]
    feed = "signal"
    if inverse:  # the inverse transforms take complex input
        cast = {"function": "cast"} if not raw else {
            "node_def": {"name": "Cast", "op": "Cast", "input": ["signal"],
                         "attr": {"SrcT": {"type": "DT_FLOAT"}, "DstT": {"type": "DT_COMPLEX64"}}}, "constants": {}}
        kwargs = {"dtype": "complex64"} if not raw else {}
        layers.append(_layer("TFOpLambda" if not raw else "TensorFlowOpLayer", "to_complex",
                             [["signal", 0, 0, kwargs]] if not raw else [[["signal", 0, 0, {}]]], **cast))
        feed = "to_complex"
    if raw:
        layers.append(_layer("TensorFlowOpLayer", "fft", [[[feed, 0, 0, {}]]], constants={"1": [length]},
                             node_def={"name": op, "op": op, "input": ["in_0", "fft_length"],
                                       "attr": {"Treal": {"type": "DT_FLOAT"},
                                                "Tcomplex": {"type": "DT_COMPLEX64"}}}))
    else:
        layers.append(_layer("TFOpLambda", "fft", [[feed, 0, 0, {"fft_length": [length]}]], function=op))
    name = f"{'raw' if raw else 'tf'}_{op.replace('.', '_')}.h5"
    return functional(tmp / name, layers, ["fft"], keras_version="2.3.0-tf" if raw else "2.5.0")


def broadcast_constants(tmp: Path, n: int) -> Path:
    """AddV2 of two constants from the config, shaped (1, n) and (n, 1): the tensor it is called on is unused."""
    add = _layer("TensorFlowOpLayer", "add", [[["signal", 0, 0, {}]]],
                 node_def={"name": "AddV2", "op": "AddV2", "input": ["in_0", "in_1"],
                           "attr": {"T": {"type": "DT_INT64"}}},
                 constants={"0": [list(range(n))], "1": [[k] for k in range(n)]})
    return functional(tmp / "constants.h5", [_input([None, 7, 3], "signal"), add], ["add"])


def wide_lstm(tmp: Path, units: int, n: int) -> Path:
    """RepeatVector(n) feeding an LSTM of `units` units: n steps, each a (1 × (3 + units)) by ((3 + units) ×
    4·units) product. The stored kernels are zeros but for every 400th value, as in a file whose weights
    deflate to a few kilobytes in a zip."""
    lstm = _lstm_entry()
    lstm["config"] = {**lstm["config"], "units": units}
    path = legacy_h5(tmp / f"wide_{units}.h5", [_input([None, 3]), _layer("RepeatVector", "rv", n=n), lstm])
    rng = np.random.default_rng(0)
    with h5py.File(path, "r+") as f:
        cell = f["model_weights/lstm/lstm/lstm_cell"]
        for name, shape in (("kernel:0", (3, 4 * units)), ("recurrent_kernel:0", (units, 4 * units)),
                            ("bias:0", (4 * units,))):
            values = np.zeros(int(np.prod(shape)), np.float32)
            values[::400] = rng.standard_normal(values[::400].size).astype(np.float32) * 0.01
            del cell[name]
            cell.create_dataset(name, data=values.reshape(shape))
    return path


def upsampled_attention(tmp: Path, size: int) -> Path:
    """UpSampling1D(size) of (batch, steps, 3), then Attention of the long sequence with itself."""
    layers = [_input([None, None, 3], "signal"), _layer("UpSampling1D", "up", [[["signal", 0, 0, {}]]], size=size),
              _layer("Attention", "att", [[["up", 0, 0, {}], ["up", 0, 0, {}]]], use_scale=False, causal=False,
                     dropout=0.0)]
    return functional(tmp / "attention.h5", layers, ["att"])


def activation_chain(tmp: Path, size: int, n: int = 12) -> Path:
    """UpSampling1D(size), then n tanh Activations in a chain."""
    layers = [_input([None, None, 3], "signal"), _layer("UpSampling1D", "up", [[["signal", 0, 0, {}]]], size=size)]
    layers += [_layer("Activation", f"act_{k}", [[[f"act_{k - 1}" if k else "up", 0, 0, {}]]], activation="tanh")
               for k in range(n)]
    return functional(tmp / "chain.h5", layers, [f"act_{n - 1}"])


# ---------------------------------------------------------------- running the command, measured


# The command runs under a small Python parent that reports its child's resource use: a child forked straight from
# this test process would inherit the test's own peak RSS (the kernel keeps the high-water mark across exec).
REPORTER = """
import json, resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}, f)
"""


def measured(*args: str, env: dict[str, str] | None = None, limit: float = 120.0
             ) -> tuple[int, str, float, float]:
    """(exit code, stderr, CPU seconds, peak RSS in MB) of one run of the installed command."""
    exe = Path(sys.executable).with_name("lstm-inspect")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lstm_inspect.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "usage.json"
        run = subprocess.run([sys.executable, "-c", REPORTER, str(report), *cmd, *args], capture_output=True,
                             text=True, env=dict(os.environ, COLUMNS="200", **(env or {})), timeout=limit)
        usage = json.loads(report.read_text())
    return usage["code"], run.stderr, usage["cpu"], usage["rss_mb"]


def assert_refused(result: tuple[int, str, float, float], layer: str, option: str = "--max-memory") -> None:
    code, stderr, cpu, rss = result
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("lstm-inspect: "), stderr
    assert layer in lines[0] and option in lines[0], stderr
    assert cpu < CPU_SECONDS and rss < RSS_MB, f"{cpu:.1f} s of CPU, {rss:.0f} MB: {stderr}"


@pytest.fixture
def vector_input(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.ones((1, 3), np.float32))
    return tmp_path / "x.npy"


# ---------------------------------------------------------------- the cases of the issue, refused


def test_repeat_vector_of_200_million_is_refused_by_every_command_that_runs_the_engine(
        tmp_path: Path, vector_input: Path) -> None:
    model = repeat_vector(tmp_path, 200_000_000, lstm=True)
    runs = [["forward", str(model), "-i", str(vector_input), "-o", str(tmp_path / "y.npz")],
            ["trace", str(model), "-i", str(vector_input), "-o", str(tmp_path / "t.npz")],
            ["stats", str(model)], ["plot", str(model), "-o", str(tmp_path / "plots")], ["verify", str(model)],
            ["diagnose", str(model), "-i", str(vector_input), "--against", str(vector_input)],
            ["export", str(model), "--to", "onnx", "-o", str(tmp_path / "m.onnx")],
            ["export", str(model), "--to", "pytorch", "-o", str(tmp_path / "torch")]]
    for argv in runs:
        result = measured(*argv)
        assert_refused(result, "layer rv (RepeatVector)")
        assert "GB" in result[1], result[1]  # the size it would need
    assert sorted(p.name for p in tmp_path.iterdir()) == [model.name, "x.npy"]  # nothing written


def test_a_repeated_vector_feeding_an_lstm_is_refused_by_the_step_budget(tmp_path: Path, vector_input: Path) -> None:
    model = repeat_vector(tmp_path, 10_000_000, lstm=True)
    result = measured("forward", str(model), "-i", str(vector_input), "-o", str(tmp_path / "y.npz"))
    assert_refused(result, "layer lstm (LSTM)", "--max-steps")
    assert "10,000,000 recurrent steps" in result[1]


def test_a_wide_lstm_is_charged_for_the_work_of_its_steps(tmp_path: Path, vector_input: Path) -> None:
    """249,000 steps are within the step budget, but each of an LSTM of 1,300 units is 6.8 million multiply-adds:
    counted alone, the steps made one run of a 154 KB file last over 180 s of CPU."""
    model = wide_lstm(tmp_path, 1300, 249_000)
    result = measured("forward", str(model), "-i", str(vector_input), "-o", str(tmp_path / "y.npz"))
    assert_refused(result, "layer lstm (LSTM)", "--max-steps")
    assert "249,000 recurrent steps of 6,775,600 multiply-adds each" in result[1]  # 1 × (3 + 1300) × 4 × 1300
    assert not (tmp_path / "y.npz").exists()
    # the option lets it run: a shorter sequence of the same width, within the budget the line asks for
    short = wide_lstm(tmp_path, 1300, 30)
    code, stderr, _, _ = measured("forward", str(short), "-i", str(vector_input), "-o", str(tmp_path / "s.npz"),
                                  "--max-steps", "1000")
    assert code == 0, stderr


def test_diagnose_shares_one_step_budget_over_all_its_runs(tmp_path: Path, vector_input: Path) -> None:
    """One run of 249,000 steps is within the budget; diagnose made it once per porting mistake (64 s of CPU,
    and over 300 s and 1.6 GB with a batch of 256). Its runs share the budget: refused before the search."""
    np.save(tmp_path / "theirs.npy", np.zeros((1, 5), np.float32))
    model = repeat_vector(tmp_path, 249_000, lstm=True)
    result = measured("diagnose", str(model), "-i", str(vector_input), "--against", str(tmp_path / "theirs.npy"))
    assert_refused(result, "layer lstm (LSTM)", "--max-steps")
    assert "249,000 recurrent steps in each of the" in result[1] and "runs diagnose makes" in result[1]
    # a shorter sequence is diagnosed, its singles and pairs within what the budget pays for: 5,000 steps a run
    short = repeat_vector(tmp_path, 5_000, lstm=True)
    run = subprocess.run([str(Path(sys.executable).with_name("lstm-inspect")), "diagnose", str(short), "-i",
                          str(vector_input), "--against", str(tmp_path / "theirs.npy"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # THEIRS (zeros) does not match the model
    report = json.loads(run.stdout)
    tried = report["candidates_tried"]  # every run of a candidate, those equal to the model's own included
    assert tried >= 20 and (tried + 2) * 5_000 <= 250_000, report  # the singles, then pairs while the budget lasts


@pytest.mark.parametrize("raw", [False, True], ids=["tf.signal", "raw-op"])
@pytest.mark.parametrize("inverse", [False, True], ids=["rfft", "irfft"])
def test_an_fft_of_length_2_to_the_25_is_refused(tmp_path: Path, raw: bool, inverse: bool) -> None:
    model = fft_model(tmp_path, raw, inverse)
    result = forward_on(tmp_path, model, np.ones((4, 7, 3), np.float32))
    assert_refused(result, "graph op fft")
    assert "FFT buffers" in result[1]


def forward_on(tmp: Path, model: Path, x: np.ndarray) -> tuple[int, str, float, float]:
    """`forward` of model on x (saved as tmp/x.npy) into tmp/y.npz: (exit code, stderr, CPU seconds, peak RSS MB)."""
    np.save(tmp / "x.npy", x)
    return measured("forward", str(model), "-i", str(tmp / "x.npy"), "-o", str(tmp / "y.npz"))


def test_an_fft_of_a_sane_length_still_matches_numpy(tmp_path: Path) -> None:
    model = fft_model(tmp_path, raw=True, inverse=False, length=16)
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    code, stderr, _, _ = forward_on(tmp_path, model, x)
    assert code == 0, stderr
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["output_0"], np.fft.rfft(x, n=16, axis=-1), rtol=1e-5, atol=1e-5)


def test_constants_broadcast_to_n_by_n_are_refused(tmp_path: Path) -> None:
    model = broadcast_constants(tmp_path, 20_000)
    result = forward_on(tmp_path, model, np.ones((1, 7, 3), np.float32))
    assert_refused(result, "graph op add")
    assert "(20000, 20000)" in result[1]


def test_attention_over_an_upsampled_sequence_is_refused(tmp_path: Path) -> None:
    model = upsampled_attention(tmp_path, 2_000)
    result = forward_on(tmp_path, model, np.ones((1, 10, 3), np.float32))  # 20,000 steps after UpSampling1D
    assert_refused(result, "layer att (Attention)")
    assert "attention scores" in result[1] and "(1, 20000, 20000)" in result[1]


def test_a_chain_of_layers_holds_only_what_is_still_needed(tmp_path: Path) -> None:
    """UpSampling1D to 100 MB then 12 Activations: 1.3 GB when every output was kept; now about two at a time.
    The output is what NumPy computes from the same input (np.repeat, then tanh twelve times)."""
    model = activation_chain(tmp_path, 25_000)
    x = np.random.default_rng(1).normal(size=(1, 350, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stderr, _, rss = measured("forward", str(model), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"))
    assert code == 0, stderr
    assert rss < 600, f"{rss:.0f} MB"
    want = np.repeat(x, 25_000, axis=1)
    for _ in range(12):
        want = np.tanh(want)
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["output_0"], want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- legitimate models, and the options


def test_the_largest_real_checkpoint_runs_under_the_default_budget() -> None:
    real = sorted((p for p in REALWORLD.glob("*") if p.suffix in (".h5", ".keras", ".hdf5")),
                  key=lambda p: p.stat().st_size)
    if not real:
        pytest.skip("the real checkpoints are not here")
    code, stderr, _, _ = measured("stats", str(real[-1]), "--json")
    assert code == 0, stderr


def test_a_real_model_gives_keras_outputs_under_the_default_budget(tmp_path: Path) -> None:
    model = REALWORLD / "translation_seq2seq_keras224.h5"
    io = REALWORLD / "translation_seq2seq_keras224.h5.io.npz"
    if not io.exists():
        pytest.skip("the real checkpoint is not here")
    with np.load(io) as d:
        inputs = {k: d[k] for k in d.files if k.startswith("x")}
        want = {k: d[k] for k in d.files if k.startswith("y")}
    np.savez(tmp_path / "x.npz", *[inputs[k] for k in sorted(inputs)])
    code, stderr, _, _ = measured("forward", str(model), "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"))
    assert code == 0, stderr
    with np.load(tmp_path / "y.npz") as y:
        got = [y[k] for k in sorted(y.files)]
    for g, w in zip(got, [want[k] for k in sorted(want)]):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("sample", ["k3_layer_zoo.keras", "k3_att_seq2seq_mha.keras", "tfk_tf_ops.h5"])
def test_big_samples_run_under_the_default_budget(sample: str) -> None:
    code, stderr, _, _ = measured("stats", str(SAMPLES / sample), "--json")
    assert code == 0, stderr


def test_the_options_let_a_refused_model_run(tmp_path: Path, vector_input: Path) -> None:
    """The environment's limits refuse a 2,000-step RepeatVector → LSTM and a 100 MB UpSampling; the options, which
    win over the environment, let them run (to the same output as an unbudgeted run of the shorter sequence)."""
    model = repeat_vector(tmp_path, 2_000, lstm=True)
    out = str(tmp_path / "y.npz")
    tight = {"LSTM_INSPECT_MAX_STEPS": "1000", "LSTM_INSPECT_MAX_MEMORY": "50MB"}
    assert_refused(measured("forward", str(model), "-i", str(vector_input), "-o", out, env=tight),
                   "layer lstm", "--max-steps")
    code, stderr, _, _ = measured("forward", str(model), "-i", str(vector_input), "-o", out, "--max-steps", "2000",
                                  env=tight)
    assert code == 0, stderr

    chain = activation_chain(tmp_path, 25_000, n=1)
    np.save(tmp_path / "z.npy", np.ones((1, 350, 3), np.float32))
    argv = ["forward", str(chain), "-i", str(tmp_path / "z.npy"), "-o", str(tmp_path / "z.npz"), "--force"]
    assert_refused(measured(*argv, env=tight), "layer up (UpSampling1D)")
    code, stderr, _, _ = measured(*argv, "--max-memory", "1GB", env=tight)
    assert code == 0, stderr


@pytest.mark.parametrize("value", ["lots", "0", "-1GB", "8XB"])
def test_a_bad_limit_is_one_line(tmp_path: Path, vector_input: Path, value: str) -> None:
    model = repeat_vector(tmp_path, 3)
    code, stderr, _, _ = measured("forward", str(model), "-i", str(vector_input), "-o", str(tmp_path / "y.npz"),
                                  env={"LSTM_INSPECT_MAX_MEMORY": value})
    assert code == 2 and stderr.count("\n") == 1 and "LSTM_INSPECT_MAX_MEMORY" in stderr, stderr


def test_the_library_takes_the_limits_as_an_argument_or_a_scope(tmp_path: Path) -> None:
    import lstm_inspect
    from lstm_inspect.base.budget import BudgetError, Limits, limited
    from lstm_inspect.engine.network import Network

    ckpt = lstm_inspect.load(repeat_vector(tmp_path, 1_000, lstm=True))
    x = np.ones((1, 3), np.float32)
    with pytest.raises(BudgetError, match="--max-steps"):
        Network(ckpt, limits=Limits(max_steps=999)).run([x])
    with limited(Limits(max_bytes=10_000)), pytest.raises(BudgetError, match="layer rv"):
        ckpt.forward(x)
    assert Network(ckpt, limits=Limits(max_steps=1_000)).run([x])[0].shape == (1, 5)


def test_every_engine_command_documents_the_options() -> None:
    from typer.testing import CliRunner

    from lstm_inspect.cli import app

    for command in ("forward", "trace", "stats", "plot", "verify", "diagnose", "export"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--max-memory" in result.output and "--max-steps" in result.output, command


# ---------------------------------------------------------------- issue 21 follow-up: holes found by an attacker


def merge_of_many(tmp: Path, cls: str, k: int, n: int) -> Path:
    """RepeatVector(n) of a (batch, 1) input, then a merge layer listing that one tensor k times (Concatenate
    along the steps axis), then GlobalAveragePooling1D."""
    cfg = {"axis": 1} if cls == "Concatenate" else {}
    layers = [_input([None, 7, 3], "signal"), _input([None, 1], "seed"),
              _layer("RepeatVector", "rep", [[["seed", 0, 0, {}]]], n=n),
              _layer(cls, "merge", [[["rep", 0, 0, {}]] * k], **cfg),
              _layer("GlobalAveragePooling1D", "gap", [[["merge", 0, 0, {}]]])]
    lstm = {**_lstm_entry(), "name": "lstm", "inbound_nodes": [[["signal", 0, 0, {}]]]}
    graph = {"input_layers": [["signal", 0, 0], ["seed", 0, 0]], "output_layers": [["gap", 0, 0], ["lstm", 0, 0]]}
    return legacy_h5(tmp / f"merge_{cls}.h5", [*layers, lstm], graph)


@pytest.fixture
def seeded_input(tmp_path: Path) -> Path:
    np.savez(tmp_path / "x.npz", signal=np.ones((1, 7, 3), np.float32), seed=np.array([[0.5]], np.float32))
    return tmp_path / "x.npz"


def test_a_concatenate_of_800_references_to_one_tensor_is_refused(tmp_path: Path, seeded_input: Path) -> None:
    """3.2 GB and exit 0 even with --max-memory 100MB before: Concatenate(axis=1) had no size check at all."""
    model = merge_of_many(tmp_path, "Concatenate", 800, 1_000_000)
    result = measured("forward", str(model), "-i", str(seeded_input), "-o", str(tmp_path / "y.npz"),
                      "--max-memory", "100MB")
    assert_refused(result, "layer merge (Concatenate)")
    assert "(1, 800000000, 1)" in result[1]


@pytest.mark.parametrize("cls, want", [("Add", 400.0), ("Average", 0.5), ("Maximum", 0.5),
                                       ("Multiply", np.float32(0.5) ** 800)])
def test_a_merge_of_800_references_to_one_tensor_accumulates_in_place(
        tmp_path: Path, seeded_input: Path, cls: str, want: float) -> None:
    """np.sum over 800 broadcast views stacked 800 copies (3.2 GB under --max-memory 100MB); the merge now combines
    into one output. The value is NumPy's: 800 × 0.5 for Add, 0.5 ** 800 in float32 (0) for Multiply."""
    model = merge_of_many(tmp_path, cls, 800, 1_000_000)
    code, stderr, cpu, rss = measured("forward", str(model), "-i", str(seeded_input), "-o", str(tmp_path / "y.npz"),
                                      "--max-memory", "100MB")
    assert code == 0, stderr
    assert cpu < CPU_SECONDS and rss < RSS_MB, f"{cpu:.1f} s of CPU, {rss:.0f} MB"
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["output_0"], [[want]], rtol=1e-6)


def test_a_small_concatenate_of_one_tensor_matches_numpy(tmp_path: Path, seeded_input: Path) -> None:
    model = merge_of_many(tmp_path, "Concatenate", 3, 5)
    code, stderr, _, _ = measured("forward", str(model), "-i", str(seeded_input), "-o", str(tmp_path / "y.npz"))
    assert code == 0, stderr
    want = np.concatenate([np.repeat([[[0.5]]], 5, axis=1)] * 3, axis=1).mean(axis=1)
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["output_0"], want, rtol=1e-6)


def list_constant_add(tmp: Path, n: int) -> Path:
    """tf.reshape(x, [-1, 1]) then tf.math.add(·, y=[0.0, 1.0, ...] of n numbers), twice, then reduce_sum: each add
    broadcasts (M, 1) against a (n,) list constant from the config (M × n)."""
    def op(name: str, fn: str, inbound: list[Any]) -> dict[str, Any]:
        return _layer("TFOpLambda", name, [inbound], function=fn, trainable=True, dtype="float32")
    y = [float(k % 3) for k in range(n)]
    layers = [_input([None, 7, 3], "signal"), op("r1", "reshape", ["signal", 0, 0, {"shape": [-1, 1]}]),
              op("a1", "math.add", ["r1", 0, 0, {"y": y}]), op("r2", "reshape", ["a1", 0, 0, {"shape": [-1, 1]}]),
              op("a2", "math.add", ["r2", 0, 0, {"y": y}]), op("red", "math.reduce_sum", ["a2", 0, 0, {"axis": 1}])]
    return functional(tmp / "list_add.h5", layers, ["red"], keras_version="2.5.0")


def test_a_list_constant_broadcast_against_a_tensor_is_refused(tmp_path: Path) -> None:
    """3.4 GB and exit 0 before: the list [0.0] * 4500 in the config was not counted by the op's precheck."""
    model = list_constant_add(tmp_path, 4_500)
    result = forward_on(tmp_path, model, np.ones((1, 7, 3), np.float32))
    assert_refused(result, "graph op a2")
    assert "(94500, 4500)" in result[1]


def test_a_small_list_constant_add_matches_numpy(tmp_path: Path) -> None:
    model = list_constant_add(tmp_path, 5)
    x = np.random.default_rng(2).normal(size=(1, 7, 3)).astype(np.float32)
    code, stderr, _, _ = forward_on(tmp_path, model, x)
    assert code == 0, stderr
    y = np.array([0.0, 1.0, 2.0, 0.0, 1.0])
    want = (np.add(np.add(x.reshape(-1, 1), y).reshape(-1, 1), y)).sum(axis=1)
    with np.load(tmp_path / "y.npz") as out:
        np.testing.assert_allclose(out["output_0"], want, rtol=1e-5)


def test_list_constants_count_by_their_shape_in_any_op_call() -> None:
    """The check every op node runs (TF op layers and Keras 3 op nodes): a nested list counts as np.shape says,
    a list of tensors as its tensors, and a list nested absurdly deep is refused without walking it."""
    from lstm_inspect.base.budget import BudgetError, Limits, limited
    from lstm_inspect.engine import ops

    column = np.ones((3_000, 1), np.float32)
    with limited(Limits(max_bytes=50 << 20)):
        ops.need_broadcast([column, [[0.0] * 100]])  # (3000, 100): 4.6 MB
        ops.need_broadcast([[column, column], 1.0])  # a list of tensors (concat's argument)
        with pytest.raises(BudgetError, match=r"\(3000, 3000\)"):
            ops.need_broadcast([column, [[0.0] * 3_000]])
        with pytest.raises(BudgetError, match=r"\(3000, 3000\)"):
            ops.need_broadcast([column, {"unused": 0}, [0] * 3_000])
        deep: list[Any] = [0.0]
        for _ in range(1_000):
            deep = [deep]
        with pytest.raises(ops.OpError, match="nested more than"):
            ops.need_broadcast([column, deep])


def padded_model(tmp: Path, dilation: int, pool: int) -> Path:
    """Conv1D(3 filters, kernel 2, causal, dilation_rate `dilation`), then MaxPooling1D(pool_size `pool`, strides 1,
    "same"), then the LSTM: the padding each implies is dilation steps and pool - 1 steps."""
    conv = _layer("Conv1D", "conv", filters=3, kernel_size=[2], strides=[1], padding="causal",
                  data_format="channels_last", dilation_rate=[dilation], groups=1, activation="linear", use_bias=True,
                  trainable=True, dtype="float32")
    pooling = _layer("MaxPooling1D", "pool", pool_size=[pool], strides=[1], padding="same",
                     data_format="channels_last", trainable=True, dtype="float32")
    path = legacy_h5(tmp / f"padded_{dilation}_{pool}.h5", [_input([None, 7, 3]), conv, pooling, _lstm_entry()])
    rng = np.random.default_rng(3)
    with h5py.File(path, "r+") as f:
        group = f["model_weights/conv"]
        group.attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
        group["conv/kernel:0"] = rng.normal(size=(2, 3, 3)).astype(np.float32)
        group["conv/bias:0"] = rng.normal(size=3).astype(np.float32)
    return path


@pytest.mark.parametrize("dilation, pool", [(50_000_000, 2), (1, 50_000_000)], ids=["dilation", "pool_size"])
def test_a_padding_of_50_million_steps_is_refused_before_keras_or_the_exporter_builds_it(
        tmp_path: Path, dilation: int, pool: int) -> None:
    """The engine's taps never build the padding, so forward was cheap, but verify took 10.5 GB in TensorFlow and
    export --to pytorch 2.7 GB (F.pad) for the dilated Conv1D, 2.7 GB for the pool: refused by every command now."""
    model = padded_model(tmp_path, dilation, pool)
    layer_name = "layer conv (Conv1D)" if dilation > 1 else "layer pool (MaxPooling1D)"
    for argv in (["verify", str(model)], ["export", str(model), "--to", "pytorch", "-o", str(tmp_path / "torch")]):
        result = measured(*argv)
        assert_refused(result, layer_name)
        assert "padded input" in result[1]
    assert not (tmp_path / "torch").exists()


def test_a_modestly_padded_model_still_matches_keras(tmp_path: Path) -> None:
    model = padded_model(tmp_path, 2, 3)
    code, stderr, _, _ = measured("verify", str(model), limit=300)
    assert code == 0, stderr


def unrolled_lstm(tmp: Path, steps: int) -> Path:
    """The tf.keras sample with its LSTM set to unroll=True over a declared length of `steps`."""
    path = tmp / f"unrolled_{steps}.h5"
    with h5py.File(LSTM_SOURCE) as f:
        config = json.loads(f.attrs["model_config"])
    config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, steps, 3]
    config["config"]["layers"][1]["config"]["unroll"] = True
    path.write_bytes(LSTM_SOURCE.read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    return path


def test_verify_of_an_unrolled_lstm_runs_keras_s_loop(tmp_path: Path) -> None:
    """unroll=True over 4096 declared steps cost 114 s of CPU in verify (tf_keras builds one cell per step; 1024
    steps 30 s); Keras now gets the loop, the same computation, and its outputs still match the engine's."""
    code, stderr, cpu, _ = measured("verify", str(unrolled_lstm(tmp_path, 1024)), limit=300)
    assert code == 0, stderr
    assert cpu < 15, f"{cpu:.1f} s of CPU"  # 30 s when Keras unrolled 1024 steps, 6 s now (TensorFlow's import)
