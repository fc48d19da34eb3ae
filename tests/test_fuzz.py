"""Broken and hostile checkpoints against every command that reads a model.

Each case is a mutated copy of a sample or real checkpoint (Hypothesis chooses the mutation), run
through the CLI in this process with a time limit. Every command must exit 0 (with a warning when
the weights hold NaN or Inf) or 2 with one clear line, never a traceback, never an internal error,
never a hang, and never a jump in memory. The number of cases per command is printed at the end
of the session.

The suite is deterministic: Hypothesis draws the same cases on every machine and every run (`derandomize`, no
example database), from the same base files (the samples in this repository, never files that only some clones
have beside them), each mutated by a NumPy generator seeded by the case alone (never by a temporary path), and the
time limits are CPU seconds (with a wall-clock cap four times as long against a hang), which a busy or slower
machine stretches far less than the clock. `make fuzz` runs a larger random search instead:
LSTM_INSPECT_FUZZ=random draws fresh cases (and adds the real checkpoints of ../shared/realworld when they are
there), LSTM_INSPECT_FUZZ_EXAMPLES sets the number of cases per command.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lstm_inspect.cli import app

from conftest import REALWORLD, SAMPLES, patch_zip_member

CASES: Counter[str] = Counter()  # reported by conftest's terminal summary
FAMILIES: Counter[str] = Counter()  # cases per mutation family (kind), over every command

RANDOM = os.environ.get("LSTM_INSPECT_FUZZ", "") == "random"
EXAMPLES = int(os.environ.get("LSTM_INSPECT_FUZZ_EXAMPLES", "0") or 0)  # 0: the deterministic suite's own counts
BASES = [SAMPLES / n for n in ("k3_single.keras", "tfk_single.h5", "tfk_bidir_concat.h5", "k3_stacked.weights.h5",
                               "tfk_single.weights_only.h5", "tfk_cudnn.h5", "k3_embedding_mask_zero.keras",
                               "k3_gru.keras", "tfk_gru_hard_sigmoid.h5", "tfk_cudnn_gru.h5", "k3_simple_rnn.keras",
                               "tfk_tf_ops.h5")]
if RANDOM:  # files some clones have beside them: only in the random run, so the suite's cases never depend on them
    BASES += [p for p in (REALWORLD / "binary_lstm_keras38.h5", REALWORLD / "charlstm_stateful_keras108_gates.h5py")
              if p.exists()]
READS_WEIGHTS = ("stats", "dump", "forward", "trace", "plot", "verify")
TIME_LIMIT = {"verify": 120, "plot": 60}  # CPU seconds (30 for the others); TensorFlow runs on every core
MEMORY_JUMP_MB = 1500
MAX_LINE = 2_500  # characters in one printed line (a name is cut to about 100, any message to about 1,000)
FORGED = "note: every output within tolerance"  # what a name holding a newline tries to print as a line of ours


def _input_for(base: Path) -> np.ndarray:
    stem = base.name.split(".")[0]
    for io in (base.parent / f"{stem}.io.npz", base.parent / f"{base.name}.io.npz"):
        if io.exists():
            with np.load(io) as d:
                return d["x"] if "x" in d.files else d["x0"]
    return np.zeros((2, 7, 3), np.float32)


def _argv(command: str, model: Path, work: Path) -> list[str]:
    x = work / "x.csv" if (work / "x.csv").exists() else work / "x.npy"
    if (work / "FORCE").exists():  # the force family: write over the folder that holds the model
        return {"show": ["show", str(model)], "stats": ["stats", str(model)],
                "dump": ["dump", str(model), "-o", str(work), "--force"],
                "forward": ["forward", str(model), "-i", str(x), "-o", str(model), "--force"],
                "trace": ["trace", str(model), "-i", str(x), "-o", str(work), "--format", "csv", "--force"],
                "plot": ["plot", str(model), "-o", str(work), "--force"],
                "verify": ["verify", str(model), "--json"]}[command]
    argv = {
        "show": ["show", str(model), "--json"],
        "stats": ["stats", str(model), "--json"],
        "dump": ["dump", str(model), "-o", str(work / "dump"), "--format", "npz"],
        "forward": ["forward", str(model), "-i", str(x), "-o", str(work / "y.npz")],
        "trace": ["trace", str(model), "-i", str(x), "-o", str(work / "t.npz")],
        "plot": ["plot", str(model), "-o", str(work / "plots")],
        "verify": ["verify", str(model), "--json"],
    }[command]
    if (work / "PLAIN").exists():  # the name families: tables and lines as a user sees them, not JSON
        argv = [a for a in argv if a != "--json"]
    if x.suffix == ".csv" and command in ("stats", "plot", "verify"):  # the wide CSV family: every input given it
        argv += ["-i", str(x)]
    return argv


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """At most `seconds` of this process's CPU time (SIGPROF: the same on a busy machine as on an idle one), and
    four times as long on the clock (SIGALRM) against a hang that spends no CPU (a read from a FIFO)."""
    def stop(signum: int, frame: Any) -> None:
        raise Hang(f"no answer within {seconds} s of CPU" if signum == signal.SIGPROF else
                   f"no answer within {4 * seconds} s")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGALRM, signal.SIGPROF)}
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.alarm(4 * seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.alarm(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_case(command: str, model: Path, work: Path, mutation: str) -> int:
    """Run one command on one broken file and check the promise; its exit code."""
    base_input = work / "x.npy"
    if not base_input.exists():
        np.save(base_input, np.zeros((2, 7, 3), np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    before_files = {p.name for p in work.parent.iterdir()}
    model_bytes = model.read_bytes() if model.is_file() and not model.is_symlink() else None
    with time_limit(TIME_LIMIT.get(command, 30)):
        result = CliRunner().invoke(app, _argv(command, model, work))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    CASES[command] += 1
    what = f"{command} on {mutation}: exit {result.exit_code}\n{result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), what
    assert result.exit_code in (0, 2), what
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, what
    # a name never prints a line of its own (the control_name family), nor a line of unbounded length (long_name)
    printed = result.stdout.splitlines() + result.stderr.splitlines()
    assert not any(line.lstrip().startswith(FORGED) for line in printed), what
    if "--json" not in _argv(command, model, work):
        assert max(map(len, printed), default=0) <= MAX_LINE, f"{what}\na line of {max(map(len, printed))} characters"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("lstm-inspect: ") or command in ("dump", "forward", "trace", "plot")
               for line in lines), what
    if result.exit_code == 2:
        assert any(line.startswith("lstm-inspect: ") for line in lines), what
    victim = mutation.split(" of ")[0]
    in_lstm = any(k in victim for k in ("lstm", "cell", "rnn", "cu_dnn", "bidirectional"))
    if mutation.startswith(("nan", "inf")) and in_lstm and result.exit_code == 0 and command in READS_WEIGHTS:
        assert "warning" in result.stderr and "NaN or Inf" in result.stderr, what
    assert after - before < MEMORY_JUMP_MB, f"{what}\nmemory peak rose by {after - before:.0f} MB"
    # nothing written outside the case's own folder, and the model never touched
    assert {p.name for p in work.parent.iterdir()} == before_files, what
    outside = work.parent / "outside"
    assert not outside.exists() or not any(outside.iterdir()), what
    if model_bytes is not None:
        assert model.read_bytes() == model_bytes, what
    return result.exit_code


# ---------------------------------------------------------------- mutations

def _datasets(f: h5py.File) -> list[str]:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(found)


def _hdf5_of(path: Path) -> tuple[Path, Callable[[], None]]:
    """The HDF5 to edit: the file itself, or model.weights.h5 pulled out of a .keras (put back after)."""
    if not zipfile.is_zipfile(path):
        return path, lambda: None
    inner = path.with_suffix(".weights-inner.h5")
    with zipfile.ZipFile(path) as z:
        inner.write_bytes(z.read("model.weights.h5"))

    def put_back() -> None:
        _rezip(path, replace={"model.weights.h5": inner.read_bytes()})
        inner.unlink()

    return inner, put_back


def _rezip(path: Path, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None,
           compress: bool = False) -> None:
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist() if i.filename not in drop]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, (replace or {}).get(name, data))


HOSTILE_NAMES = ["{outside}/PWNED", "../../outside/PWNED", "..", ".", "", "lstm[/bold]", "lstm[green]",
                 "\x1b[2J\x1b]0;owned\x07", "a/b/c", "x" * 300, "\u202ertl", "$\\frac{$x"]


def _rename_first_recurrent(cfg: Any, name: str, classes: tuple[str, ...] = ("LSTM", "CuDNNLSTM", "Bidirectional",
                                                                             "RNN")) -> bool:
    """Rename the first LSTM-like layer (or of `classes`), and every reference to it, in a parsed config."""
    layers = cfg.get("config", {}).get("layers") if isinstance(cfg.get("config"), dict) else cfg.get("config")
    for entry in layers or []:
        if isinstance(entry, dict) and entry.get("class_name") in classes:
            old = entry.get("name") or entry.get("config", {}).get("name")
            text = json.dumps(cfg).replace(json.dumps(old), json.dumps(name))
            cfg.clear()
            cfg.update(json.loads(text))
            return True
    return False


RECURRENT = ("LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "Bidirectional", "RNN")


def _edit_config(path: Path, edit: Callable[[Any], str | None], text: Callable[[str], str] = str) -> str | None:
    """Apply `edit` to the model config (a .keras's config.json, a legacy .h5's model_config) and write it back,
    its JSON text passed through `text`; the edit's label, or None when the file has no config or the edit found
    nothing to change."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            cfg = json.loads(z.read("config.json"))
        label = edit(cfg)
        if label is not None:
            _rezip(path, replace={"config.json": text(json.dumps(cfg)).encode()})
        return label
    try:
        f = h5py.File(path, "r+")
    except OSError:
        return None
    with f:
        if "model_config" not in f.attrs:
            return None
        raw = f.attrs["model_config"]
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        label = edit(cfg)
        if label is not None:
            f.attrs["model_config"] = text(json.dumps(cfg))
    return label


def _layers(cfg: Any) -> list[Any] | None:
    """The layer list of a {class_name, config} model config (Keras 1-2 Sequential: the config itself)."""
    body = cfg.get("config") if isinstance(cfg, dict) else None
    if isinstance(body, list):
        return body
    if isinstance(body, dict) and isinstance(body.get("layers"), list):
        return body["layers"]
    return None


def _first_tensor(obj: Any) -> dict | None:
    """The first Keras 3 __keras_tensor__ in a call's arguments."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return obj
        obj = list(obj.values())
    if isinstance(obj, list):
        for value in obj:
            found = _first_tensor(value)
            if found is not None:
                return found
    return None


def _activation_chain(cfg: Any, n: int) -> str | None:
    """n linear Activation layers in front of the first recurrent layer: listed in reverse in a functional model
    (each listed before what it consumes), in order in a Sequential."""
    layers = _layers(cfg)
    if not layers:
        return None
    at = next((k for k, e in enumerate(layers) if isinstance(e, dict) and e.get("class_name") in RECURRENT), None)
    if at is None:
        return None
    keras3 = "module" in layers[at]

    def act(k: int, inbound: list[Any]) -> dict:
        entry = {"class_name": "Activation", "config": {"name": f"fz_act{k}", "activation": "linear",
                                                        "trainable": True}, "name": f"fz_act{k}",
                 "inbound_nodes": inbound}
        if keras3:
            entry.update(module="keras.layers", registered_name=None)
        return entry

    nodes = layers[at].get("inbound_nodes")
    if not nodes:  # a Sequential (or a first layer fed by the model's input): the chain goes in front, in order
        layers[at:at] = [act(k, []) for k in range(n)]
        return f"{n} Activation layers before {layers[at + n].get('class_name')}"
    first = nodes[0]
    if isinstance(first, dict):  # Keras 3: {"args": [tensor, ...], "kwargs": {...}}
        tensor = _first_tensor(first.get("args"))
        history = tensor.get("config", {}).get("keras_history") if tensor else None
        if not isinstance(history, list) or len(history) < 3:
            return None
        source = list(history[:3])

        def inbound(prev: list[Any]) -> list[Any]:
            t = json.loads(json.dumps(tensor))
            t["config"]["keras_history"] = prev
            return [{"args": [t], "kwargs": {}}]

        chain = [act(k, inbound(source if k == 0 else [f"fz_act{k - 1}", 0, 0])) for k in range(n)]
        tensor["config"]["keras_history"] = [f"fz_act{n - 1}", 0, 0]
    elif isinstance(first, list) and first and isinstance(first[0], list) and len(first[0]) >= 3:
        source = list(first[0][:3])
        chain = [act(k, [[[*(source if k == 0 else [f"fz_act{k - 1}", 0, 0]), {}]]]) for k in range(n)]
        first[0][:3] = [f"fz_act{n - 1}", 0, 0]
    else:
        return None
    layers[at:at] = list(reversed(chain))
    return f"{n} Activation layers listed in reverse before {layers[at + n].get('class_name')}"


def _nest(cfg: Any, depth: int) -> str:
    """The whole model as the only layer of a Sequential, `depth` times over."""
    for k in range(depth):
        inner = {key: cfg[key] for key in ("module", "class_name", "config", "registered_name") if key in cfg}
        inner["name"] = f"fz_nest{k}"
        cfg.clear()
        cfg.update({"class_name": "Sequential", "config": {"name": f"fz_outer{k}", "layers": [inner]}})
        if "module" in inner:
            cfg.update(module="keras", registered_name=None)
    return f"the model nested in {depth} Sequentials"


def _recurrent_config(cfg: Any) -> dict | None:
    """The config that holds the first recurrent layer's units (a Bidirectional's inner layer, an RNN's cell)."""
    for entry in _layers(cfg) or []:
        if isinstance(entry, dict) and entry.get("class_name") in RECURRENT and isinstance(entry.get("config"), dict):
            inner = entry["config"]
            for key in ("layer", "cell"):
                if isinstance(inner.get(key), dict) and isinstance(inner[key].get("config"), dict):
                    inner = inner[key]["config"]
            return inner
    return None


def _input_configs(cfg: Any) -> list[dict]:
    """The configs that declare the model's input shape: its InputLayers, or a Sequential's first layer."""
    layers = [e for e in _layers(cfg) or [] if isinstance(e, dict) and isinstance(e.get("config"), dict)]
    found = [e["config"] for e in layers if e.get("class_name") == "InputLayer"]
    return (found or [layers[0]["config"]]) if layers else []


def _declare_shape(cfg: Any, make: Callable[[list[Any]], Any], label: str) -> str | None:
    targets = _input_configs(cfg)
    for target in targets:
        key = next((k for k in ("batch_shape", "batch_input_shape") if isinstance(target.get(k), list)),
                   "batch_input_shape")
        old = target.get(key) if isinstance(target.get(key), list) and target.get(key) else [None, None, 3]
        target[key] = make(old)
    return label if targets else None


ABSURD_VALUES = ["units Infinity", "units NaN", "units string", "units 0", "batch_shape 0", "batch_shape -3",
                 "batch_shape string", "batch_shape rank 5", "batch_shape rank 7", "batch_shape dict",
                 "keras_history Infinity"]


WRONG_TYPED = ("x", None, True, [0, 0], {"a": 1}, [])


def _wrong_type(cfg: Any, rng: np.random.Generator) -> str | None:
    """One numeric setting of one layer (an epsilon, an axis, a size, a rate...) given a value of another type."""
    found: list[tuple[dict, str]] = []
    stack = [cfg]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            inner = node.get("config")
            if "class_name" in node and isinstance(inner, dict):
                found += [(inner, k) for k, v in sorted(inner.items())
                          if isinstance(v, (int, float)) and not isinstance(v, bool)]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if not found:
        return None
    settings, key = found[int(rng.integers(0, len(found)))]
    settings[key] = WRONG_TYPED[int(rng.integers(0, len(WRONG_TYPED)))]
    return f"wrong_type_setting: {key} = {settings[key]!r}"


def _absurd_value(cfg: Any, which: str) -> str | None:
    if which.startswith("units"):
        rec = _recurrent_config(cfg)
        if rec is None:
            return None
        key = "units" if "units" in rec or "output_dim" not in rec else "output_dim"
        rec[key] = {"Infinity": float("inf"), "NaN": float("nan"), "string": "5", "0": 0}[which.split()[1]]
        return f"{key} {which.split()[1]}"
    if which.startswith("batch_shape"):
        value = {"0": lambda s: [None, 0, *s[2:]], "-3": lambda s: [None, -3, *s[2:]],
                 "string": lambda s: [None, "seven", *s[2:]], "rank": None, "dict": lambda s: {"a": 1}}
        kind = which.split()[1]
        if kind == "rank":
            rank = int(which.split()[2])
            return _declare_shape(cfg, lambda s: [None] * (rank - 1) + [s[-1]], f"declared input of rank {rank}")
        return _declare_shape(cfg, value[kind], f"declared input shape {kind}")
    text = json.dumps(cfg)
    if '"keras_history": [' not in text:
        return None
    at = text.index('"keras_history": [') + len('"keras_history": [')
    comma = text.index(",", at)
    edited = json.loads(text[:comma + 1] + " Infinity" + text[text.index(",", comma + 1):])
    cfg.clear()
    cfg.update(edited)
    return "a node index Infinity in keras_history"


# ---------------------------------------------------------------- the budget family (issue 21 §2)

BUDGET_INFLATIONS = ["upsampling", "padding", "repeat_vector", "fft_length", "constants"]


def _grown_layer(cfg: Any, class_name: str, config: dict[str, Any]) -> str | None:
    """One layer `class_name` in front of the first recurrent layer (where _activation_chain puts its first)."""
    if _activation_chain(cfg, 1) is None:
        return None
    entry = next(e for e in _layers(cfg) or [] if isinstance(e, dict) and e.get("name") == "fz_act0")
    entry["class_name"] = class_name
    entry["config"] = {"name": "fz_act0", "trainable": True, **config}
    return f"{class_name} {config} before the first recurrent layer"


def _inflate_existing(cfg: Any, class_name: str, key: str, value: Any) -> str | None:
    found = [e for e in _layers(cfg) or [] if isinstance(e, dict) and e.get("class_name") == class_name
             and isinstance(e.get("config"), dict)]
    for entry in found:
        entry["config"][key] = value
    return f"{len(found)} {class_name} with {key} {value}" if found else None


def _fft_length(cfg: Any, length: int) -> str | None:
    """tf.signal.fft calls (TFOpLambda) made rfft calls of fft_length `length`."""
    changed = 0
    for entry in _layers(cfg) or []:
        if (isinstance(entry, dict) and entry.get("class_name") == "TFOpLambda"
                and isinstance(entry.get("config"), dict) and entry["config"].get("function") == "signal.fft"):
            entry["config"]["function"] = "signal.rfft"
            for call in entry.get("inbound_nodes") or []:
                if isinstance(call, list) and len(call) >= 4 and isinstance(call[3], dict):
                    call[3]["fft_length"] = [length]
            changed += 1
    return f"{changed} signal.fft made rfft of fft_length {length}" if changed else None


def _broadcast_constants(cfg: Any, n: int) -> str | None:
    """A TensorFlowOpLayer AddV2 of constants (1, n) and (n, 1), an extra output of a legacy functional model."""
    layers, body = _layers(cfg), cfg.get("config") if isinstance(cfg, dict) else None
    if not layers or not isinstance(body, dict) or not body.get("input_layers") or "module" in layers[0]:
        return None
    source = body["input_layers"][0]
    if not isinstance(source, list) or len(source) < 3:
        return None
    layers.append({"class_name": "TensorFlowOpLayer", "name": "fz_add", "inbound_nodes": [[[*source[:3], {}]]],
                   "config": {"name": "fz_add", "trainable": True, "dtype": "float32",
                              "node_def": {"name": "AddV2", "op": "AddV2", "input": ["in_0", "in_1"],
                                           "attr": {"T": {"type": "DT_INT64"}}},
                              "constants": {"0": [[0] * n], "1": [[0]] * n}}})
    body["output_layers"] = [*body.get("output_layers", []), ["fz_add", 0, 0]]
    return f"AddV2 of constants (1, {n}) and ({n}, 1)"


def _budget_inflation(path: Path, rng: np.random.Generator, keras_builds_it: bool) -> str:
    """A size the config decides made large: an UpSampling1D or ZeroPadding1D put in front of the first recurrent
    layer, RepeatVector's n, an FFT's fft_length, constants broadcast to n × n. Every command must refuse it in one
    line (exit 2) or run it within the fuzz's time and memory limits (exit 0)."""
    # 100: a model that still runs; the others pass the default budget (250,000 steps or 2 GB) on any base
    huge = [100, 1_000_000, 100_000_000, 2**31 - 1][int(rng.integers(0, 4))]
    edits: dict[str, Callable[[Any], str | None]] = {
        "upsampling": lambda cfg: _grown_layer(cfg, "UpSampling1D", {"size": huge}),
        "padding": lambda cfg: _grown_layer(cfg, "ZeroPadding1D", {"padding": [0, huge]}),
        "repeat_vector": lambda cfg: _inflate_existing(cfg, "RepeatVector", "n", huge),
        "fft_length": lambda cfg: _fft_length(cfg, 1 << int(rng.integers(12, 31))),
        # a verify case would build the extra output with Keras too: the constants stay with the other commands
        "constants": lambda cfg: None if keras_builds_it else _broadcast_constants(cfg, [500, 6000][huge % 2]),
    }
    first = int(rng.integers(0, len(BUDGET_INFLATIONS)))
    for name in BUDGET_INFLATIONS[first:] + BUDGET_INFLATIONS[:first]:  # the one drawn, or the next that applies
        label = _edit_config(path, edits[name])
        if label is not None:
            return label
    return "budget_inflation: no config to inflate"


def _reverse_chunks(f: h5py.File, gzip: bool = False) -> int:
    """Rewrite every 2-D float dataset chunked by rows, its rows written from the last: the chunks lie in the
    file in reverse order, so reading forwards seeks backwards (gzip: each chunk compressed by HDF5 too)."""
    done = 0
    for name in _datasets(f):
        ds = f[name]
        if ds.ndim != 2 or ds.dtype.kind != "f" or ds.shape[0] < 2 or ds.shape[1] < 1:
            continue
        data, attrs = ds[()], dict(ds.attrs)
        del f[name]
        new = f.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=(1, data.shape[1]),
                               compression="gzip" if gzip else None)
        for row in reversed(range(data.shape[0])):
            new[row] = data[row]
        for key, value in attrs.items():
            new.attrs[key] = value
        done += 1
    return done


NAME_FAMILIES = ("long_name", "control_name")
CONTROL_CHARS = ["\n", "\t", "\r", "\x1b", "\u2028", "\x85", "\x00", "\u202e", "\x0b", "\x1c"]
HUGE = "FZ_HUGE_INTEGER"  # replaced by the digits in the config's text (json.dumps refuses such an int itself)
HUGE_PLACES = ["units", "a key of its own", "a declared length"]
WIDE_COLUMNS = [4, 70_000, 1_000_000, 10_000_000]


def _huge_integer(cfg: Any, which: str) -> str | None:
    if which == "units":
        rec = _recurrent_config(cfg)
        if rec is None:
            return None
        rec["units"] = HUGE
        return which
    if which == "a key of its own":
        layers = [e for e in _layers(cfg) or [] if isinstance(e, dict) and isinstance(e.get("config"), dict)]
        if not layers:
            return None
        layers[0]["config"]["fz_big"] = HUGE
        return which
    return _declare_shape(cfg, lambda s: [None, HUGE, *s[2:]], which)


ZIP_UNREADABLE = [("encrypted", 1, None), ("method 9 (deflate64)", None, 9), ("method 99 (AES)", None, 99),
                  ("method 1 (shrink)", None, 1), ("method 6 (implode)", None, 6)]


def mutate(kind: str, path: Path, rng: np.random.Generator, keras_builds_it: bool = False) -> str:
    """Apply one mutation to the file at `path` (or to the case around it); returns a label for messages.

    keras_builds_it: the case runs verify, where Keras builds the model too (a few hundred layers take it
    10 s; the engine's own limit is tested by the other commands, on thousands).
    """
    work = path.parent
    if kind == "hostile_name":
        name = HOSTILE_NAMES[int(rng.integers(0, len(HOSTILE_NAMES)))]
        name = name.replace("{outside}", str(work.parent / "outside"))
        _edit_config(path, lambda cfg: "renamed" if _rename_first_recurrent(cfg, name) else None)
        return f"layer renamed {name!r}"
    if kind in NAME_FAMILIES:
        (work / "PLAIN").write_text("")
        if kind == "long_name":  # Keras builds verify's model: 20,000 characters already cost it 80 MB
            n = int(rng.integers(10_000, 20_001)) if keras_builds_it else int(rng.integers(100_000, 400_001))
            if not zipfile.is_zipfile(path):  # an HDF5 attribute holds at most 64 KB, the name several times
                n = int(rng.integers(4_000, 10_001))
            name, label = "N" * n, f"layer renamed with {n:,} characters"
        else:
            char = CONTROL_CHARS[int(rng.integers(0, len(CONTROL_CHARS)))]
            name, label = f"lstm{char}{FORGED}", f"layer renamed with {char!r} then a line of ours"
        done = _edit_config(path, lambda cfg: "renamed" if _rename_first_recurrent(cfg, name, RECURRENT) else None)
        return label if done else f"{kind}: no config"
    if kind == "huge_integer":
        which = HUGE_PLACES[int(rng.integers(0, len(HUGE_PLACES)))]
        digits = int(rng.integers(4_301, 20_001))
        number = ("-" if rng.integers(0, 2) else "") + "9" * digits
        label = _edit_config(path, lambda cfg: _huge_integer(cfg, which),
                             text=lambda t: t.replace(json.dumps(HUGE), number))
        return f"an integer of {digits:,} digits as {label}" if label else "huge_integer: no config"
    if kind == "wide_csv_input":
        columns = WIDE_COLUMNS[int(rng.integers(0, len(WIDE_COLUMNS)))]
        rows = int(rng.integers(1, 4))
        (work / "x.csv").write_bytes((b"0," * (columns - 1) + b"0\n") * rows)
        return f"a CSV input of {rows} rows of {columns:,} values"
    if kind == "force_on_input":
        (work / "FORCE").write_text("")
        return "--out the model's own folder (or the model itself) with --force"
    if kind == "degenerate_input":
        x = np.load(work / "x.npy")
        choice = int(rng.integers(0, 4))
        shape = list(x.shape)
        if choice < 3 and len(shape) > choice:
            shape[choice] = 0
            x = np.zeros(shape, x.dtype)
        else:
            x = x.astype(np.float32)
            x.reshape(-1)[0] = np.nan
        np.save(work / "x.npy", x)
        return f"input of shape {x.shape}" + (" with a NaN" if choice == 3 else "")
    if kind == "graph_size":
        n = int(rng.integers(50, 301)) if keras_builds_it else int(rng.integers(300, 2001))
        depth = int(rng.integers(2, 80))  # past 64 nested models, and past 200 levels of JSON

        def reverse(cfg: Any) -> str | None:
            layers = _layers(cfg)
            if not layers or not isinstance(cfg.get("config"), dict) or cfg.get("class_name") == "Sequential":
                return None
            layers.reverse()
            return "the functional model's layers listed in reverse"

        edits: list[Callable[[Any], str | None]] = [lambda cfg: _activation_chain(cfg, n), reverse,
                                                    lambda cfg: _nest(cfg, depth)]
        first = int(rng.integers(0, len(edits)))
        for edit in edits[first:] + edits[:first]:  # the one drawn, or the next that applies
            label = _edit_config(path, edit)
            if label is not None:
                return label
        return "graph_size: no config to grow"
    if kind == "absurd_declared_length":
        steps = [20_000_000, 5_000, 1 << 30][int(rng.integers(0, 3))]
        label = _edit_config(path, lambda cfg: _declare_shape(cfg, lambda s: [None, steps, *s[2:]] if len(s) >= 3
                                                              else [None, steps], f"{steps} declared steps"))
        return label or "absurd_declared_length: no config"
    if kind == "budget_inflation":
        return _budget_inflation(path, rng, keras_builds_it)
    if kind == "absurd_config_value":
        first = int(rng.integers(0, len(ABSURD_VALUES)))
        for which in ABSURD_VALUES[first:] + ABSURD_VALUES[:first]:  # the one drawn, or the next that applies
            label = _edit_config(path, lambda cfg, which=which: _absurd_value(cfg, which))
            if label is not None:
                return label
        return "absurd_config_value: no config"
    if kind == "wrong_type_setting":
        return _edit_config(path, lambda cfg: _wrong_type(cfg, rng)) or "wrong_type_setting: no config"
    data = bytearray(path.read_bytes())
    if kind == "truncate":
        cut = int(rng.integers(0, len(data)))
        path.write_bytes(bytes(data[:cut]))
        return f"truncate at {cut}"
    if kind in ("flip_header", "flip_anywhere"):
        span = min(len(data), 4096) if kind == "flip_header" else len(data)
        at = rng.integers(0, span, size=int(rng.integers(1, 9)))
        for k in at:
            data[k] = int(rng.integers(0, 256))
        path.write_bytes(bytes(data))
        return f"{kind} at {sorted(int(k) for k in at)}"
    if kind == "compressed_reverse_chunks":
        if zipfile.is_zipfile(path):
            inner, put_back = _hdf5_of(path)
            with h5py.File(inner, "r+") as f:
                n = _reverse_chunks(f)
            put_back()
            _rezip(path, compress=True)
            return f"{n} weights with their chunks in reverse order, every zip member DEFLATE-compressed"
        with h5py.File(path, "r+") as f:
            n = _reverse_chunks(f, gzip=True)
        return f"{n} weights gzip-compressed in HDF5 with their chunks in reverse order"
    if kind.startswith("zip_") and not zipfile.is_zipfile(path):
        kind = "json_garbage"
    if kind == "zip_drop_member":
        member = ["config.json", "model.weights.h5", "metadata.json"][int(rng.integers(0, 3))]
        _rezip(path, drop=(member,))
        return f"zip without {member}"
    if kind == "zip_bad_config":
        choice = int(rng.integers(0, 4))
        bad = [b"{not json", b"\xff\xfe\xfa", b"[]",
               json.dumps({"class_name": "Sequential", "config": 7}).encode()][choice]
        _rezip(path, replace={"config.json": bad})
        return f"zip config.json variant {choice}"
    if kind == "zip_bomb":
        _rezip(path, replace={"model.weights.h5": b"\0" * (300 << 20)}, compress=True)
        return "zip weights member inflating to 300 MB of zeros"
    if kind == "zip_compressed":
        _rezip(path, compress=True)
        return "every zip member DEFLATE-compressed"
    if kind == "zip_unreadable_member":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        member = names[int(rng.integers(0, len(names)))]
        what, flag, method = ZIP_UNREADABLE[int(rng.integers(0, len(ZIP_UNREADABLE)))]
        patch_zip_member(path, member, flag, method)
        return f"zip member {member} {what}"
    h5path, put_back = _hdf5_of(path)
    label = kind
    with h5py.File(h5path, "r+") as f:
        names = _datasets(f)
        if not names:
            pass
        elif kind == "delete_dataset":
            victim = names[int(rng.integers(0, len(names)))]
            del f[victim]
            label = f"delete dataset {victim}"
        elif kind == "delete_attribute":
            holders = [f] + [f[n] for n in ("model_weights",) if n in f]
            holder = holders[int(rng.integers(0, len(holders)))]
            attrs = list(holder.attrs)
            if attrs:
                victim = attrs[int(rng.integers(0, len(attrs)))]
                del holder.attrs[victim]
                label = f"delete attribute {victim}"
        elif kind == "wrong_shape":
            victim = names[int(rng.integers(0, len(names)))]
            shape = tuple(int(n) for n in rng.integers(1, 9, size=int(rng.integers(1, 3))))
            del f[victim]
            f[victim] = np.zeros(shape, np.float32)
            label = f"{victim} reshaped to {shape}"
        elif kind == "absurd_size":
            victim = names[int(rng.integers(0, len(names)))]
            del f[victim]
            f.create_dataset(victim, shape=(200_000, 400_000), dtype="float32", chunks=(1, 1024))
            label = f"{victim} declares 320 GB"
        elif kind in ("nan", "inf"):
            victim = next((n for n in names if n.endswith(("kernel:0", "kernel", "vars/0", "vars/1", "_W_i", "_U_f"))),
                          names[0])
            values = f[victim][()]
            if values.dtype.kind == "f" and values.size:
                values.reshape(-1)[int(rng.integers(0, values.size))] = np.nan if kind == "nan" else np.inf
                f[victim][...] = values
            label = f"{kind} in {victim}"
        elif kind == "external_link":
            victim = names[int(rng.integers(0, len(names)))]
            del f[victim]
            f[victim] = h5py.ExternalLink(str(path.parent / "elsewhere.h5"), "data")
            label = f"{victim} as an external link"
        elif kind == "virtual_dataset":
            victim = names[int(rng.integers(0, len(names)))]
            shape = f[victim].shape or (1,)
            layout = h5py.VirtualLayout(shape=shape, dtype="float32")
            layout[...] = h5py.VirtualSource(str(path.parent / "elsewhere.h5"), "data", shape=shape)
            del f[victim]
            f.create_virtual_dataset(victim, layout, fillvalue=0)
            label = f"{victim} as a virtual dataset"
        elif kind == "external_storage":
            victim = names[int(rng.integers(0, len(names)))]
            shape = f[victim].shape or (1,)
            targets = ["/proc/self/environ", "/dev/zero", str(work / "fifo")]
            target = targets[int(rng.integers(0, len(targets)))]
            if target.endswith("fifo") and not Path(target).exists():
                os.mkfifo(target)
            del f[victim]
            nbytes = max(4, int(np.prod(shape)) * 4)
            f.create_dataset(victim, shape=shape, dtype="float32",
                             external=[(target, 0, h5py.h5f.UNLIMITED if target == "/dev/zero" else nbytes)])
            label = f"{victim} stored in {target}"
        elif kind == "many_name_chunks":
            holders = [f[n] for n in ("model_weights",) if n in f] + [f]
            holder = holders[0]
            for k in range(1100):
                holder.attrs[f"layer_names{k}"] = [f"pad{k}".encode()]
            label = "1100 chunked layer_names attributes"
        elif kind == "json_garbage":
            if "model_config" in f.attrs:
                f.attrs["model_config"] = [b"{broken", np.void(b"\xff\xfe")][int(rng.integers(0, 2))]
                label = "model_config not JSON"
            elif "layer_names" in f.attrs:
                f.attrs["layer_names"] = np.array([b"\xff\xfe", b"nope"])
                label = "layer_names not UTF-8, naming missing groups"
    put_back()
    return label


MUTATIONS = ["truncate", "flip_header", "flip_anywhere", "delete_dataset", "delete_attribute", "wrong_shape",
             "absurd_size", "nan", "inf", "external_link", "virtual_dataset", "json_garbage", "zip_drop_member",
             "zip_bad_config", "zip_bomb", "zip_compressed",
             # the hostile families of issue 12: names, external storage, force targets, degenerate inputs,
             # attribute sizes, graph sizes, compressed members read backwards, members Python cannot read,
             # absurd declared lengths and config values
             "hostile_name", "external_storage", "force_on_input", "degenerate_input", "many_name_chunks",
             "graph_size", "compressed_reverse_chunks", "zip_unreadable_member", "absurd_declared_length",
             "absurd_config_value",
             # issue 21 §3: names of 400,000 characters, names that hold control characters, integers past Python's
             # 4,300 digits, CSV inputs of millions of columns
             "long_name", "control_name", "huge_integer", "wide_csv_input",
             # issue 21: sizes a config decides (RepeatVector n, UpSampling size, fft_length, constants) inflated
             "budget_inflation",
             # an attacker's review: a numeric setting of another type (epsilon "x", axis true, mask_value [0, 0])
             "wrong_type_setting"]


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    with h5py.File(folder / "elsewhere.h5", "w") as f:
        f["data"] = np.ones((4096,), np.float32)
    return folder


def _one_case(command: str, folder: Path, base_index: int, kind: str, seed: int) -> None:
    base = BASES[base_index % len(BASES)]
    work = folder / f"{command}-{CASES[command]}"
    work.mkdir()
    (folder / "outside").mkdir(exist_ok=True)
    shutil.copy(folder / "elsewhere.h5", work / "elsewhere.h5")
    model = work / base.name
    shutil.copy(base, model)
    np.save(work / "x.npy", _input_for(base))
    label = mutate(kind, model, np.random.default_rng(seed), keras_builds_it=command == "verify")
    FAMILIES[kind] += 1
    try:
        run_case(command, model, work, f"{label} of {base.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


CASE = dict(base_index=st.integers(0, 100), kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1))
FAST = settings(max_examples=EXAMPLES or 250, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(EXAMPLES // 6, 1) if EXAMPLES else 40, deadline=None, derandomize=not RANDOM,
                database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("command", ["show", "stats", "dump", "forward", "trace"])
def test_fuzz_commands(command: str, elsewhere: Path) -> None:
    @FAST
    @given(**CASE)
    def case(base_index: int, kind: str, seed: int) -> None:
        _one_case(command, elsewhere, base_index, kind, seed)

    case()


@pytest.mark.parametrize("command", ["plot", "verify"])
def test_fuzz_slow_commands(command: str, elsewhere: Path) -> None:
    @SLOW
    @given(**CASE)
    def case(base_index: int, kind: str, seed: int) -> None:
        _one_case(command, elsewhere, base_index, kind, seed)

    case()


@pytest.mark.parametrize("command", ["stats", "forward", "trace"])
def test_fuzz_budget_family(command: str, elsewhere: Path) -> None:
    """The budget family alone, on every base: exit 0 or 2 within the limits, never 3 or a hang (issue 21 §2)."""
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(base_index=st.integers(0, len(BASES) - 1), seed=st.integers(0, 2**32 - 1))
    def case(base_index: int, seed: int) -> None:
        _one_case(command, elsewhere, base_index, "budget_inflation", seed)

    case()


@pytest.mark.parametrize("command", ["show", "stats", "dump", "forward", "trace", "plot", "verify"])
def test_files_that_are_not_files(command: str, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 7, 3), np.float32))
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "folder.keras").mkdir()
    os.symlink("/proc/self/mem", tmp_path / "unreadable.h5")  # open works, read fails (root reads any file)
    (tmp_path / "text.h5").write_text("not a model\n")
    for name in ("empty.h5", "folder.keras", "unreadable.h5", "text.h5", "missing.h5"):
        run_case(command, tmp_path / name, tmp_path, name)


# ---------------------------------------------------------------- TensorFlow formats

TF_BASES = [SAMPLES / "tf215" / "bidir_stacked_savedmodel", SAMPLES / "tf215" / "bidir_stacked_ckpt"]
TF_MUTATIONS = ["truncate_index", "truncate_data", "flip_index", "flip_data", "delete_shard", "bad_state_file",
                "flip_metadata", "truncate_metadata",
                # issue 21 §3: a file of the folder (index, data shard, keras_metadata.pb, checkpoint state) or the
                # variables/ folder replaced by a symbolic link to a copy outside the folder named: always refused
                "link_outside"]


def mutate_tf(kind: str, folder: Path, rng: np.random.Generator) -> str:
    """One mutation of a copied SavedModel or checkpoint folder."""
    index = sorted(folder.rglob("*.index"))[0]  # sorted: the order of a folder's listing differs between machines
    data = sorted(folder.rglob("*.data-*"))[0]
    metadata = folder / "keras_metadata.pb"
    target = {"truncate_index": index, "flip_index": index, "truncate_data": data, "flip_data": data,
              "flip_metadata": metadata, "truncate_metadata": metadata}.get(kind)
    if target is not None and not target.exists():
        target = index
    if kind.startswith("truncate") and target is not None:
        raw = target.read_bytes()
        cut = int(rng.integers(0, max(1, len(raw))))
        target.write_bytes(raw[:cut])
        return f"{target.name} cut at {cut}"
    if kind.startswith("flip") and target is not None:
        raw = bytearray(target.read_bytes())
        at = rng.integers(0, max(1, len(raw)), size=int(rng.integers(1, 6)))
        for k in at:
            raw[k] = int(rng.integers(0, 256))
        target.write_bytes(bytes(raw))
        return f"{target.name} bytes changed at {sorted(int(k) for k in at)}"
    if kind == "delete_shard":
        data.unlink()
        return f"{data.name} deleted"
    if kind == "link_outside":
        return _link_outside(folder, [index, data, metadata, folder / "checkpoint", index.parent], rng)
    state = folder / "checkpoint"
    choice = int(rng.integers(0, 3))
    state.write_text(['model_checkpoint_path: "/etc/passwd"\n', 'model_checkpoint_path: "../../x"\n',
                      "\xff\xfe garbage"][choice])
    return f"checkpoint state file variant {choice}"


def _link_outside(folder: Path, candidates: list[Path], rng: np.random.Generator) -> str:
    """One of `candidates` that exists moved beside the folder and replaced by a symbolic link to it."""
    present = [p for p in candidates if p.exists() and p != folder]
    victim = present[int(rng.integers(0, len(present)))]
    away = folder.parent / f"outside-{victim.name}"
    victim.rename(away)
    victim.symlink_to(away, target_is_directory=away.is_dir())
    return f"link_outside: {victim.relative_to(folder)} links to {away.name} beside the folder"


@pytest.mark.parametrize("command", ["show", "dump", "forward"])
def test_fuzz_tf_formats(command: str, elsewhere: Path) -> None:
    @settings(max_examples=max(EXAMPLES // 4, 1) if EXAMPLES else 60, deadline=None, derandomize=not RANDOM,
              database=None, suppress_health_check=list(HealthCheck))
    @given(base_index=st.integers(0, 10), kind=st.sampled_from(TF_MUTATIONS), seed=st.integers(0, 2**32 - 1))
    def case(base_index: int, kind: str, seed: int) -> None:
        base = TF_BASES[base_index % len(TF_BASES)]
        work = elsewhere / f"tf-{command}-{CASES[command]}"
        work.mkdir()
        (elsewhere / "outside").mkdir(exist_ok=True)
        model = work / base.name
        shutil.copytree(base, model)
        np.save(work / "x.npy", np.zeros((2, 7, 3), np.float32))
        label = mutate_tf(kind, model, np.random.default_rng(seed))
        FAMILIES[f"tf_{kind}"] += 1
        try:
            code = run_case(command, model, work, f"{label} of {base.name}")
            assert kind != "link_outside" or code == 2, f"{command} read {label} of {base.name}"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    case()
