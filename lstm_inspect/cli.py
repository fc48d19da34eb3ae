"""The `lstm-inspect` command: parse arguments, call the library, render. Nothing else lives here.

Everything that comes from a file or a path (layer names, notes, file names, error messages) is
printed literally: never as rich markup, and with control characters shown as visible escapes.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from lstm_inspect import load, load_layers
from lstm_inspect.base import __version__, budget
from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.shapes import summarize
from lstm_inspect.engine.user_layers import unknown_layers
from lstm_inspect.io.arrays import (
    LINE_CHARS,
    ordered_inputs,
    read_inputs,
    read_outputs,
    shown,
    write_arrays,
    write_trace,
)
from lstm_inspect.model.checkpoint import Checkpoint, RecurrentDirection

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def reflow(text: str | None) -> str | None:
    """A docstring as help for rich to wrap to the terminal: each paragraph one line (its hard line breaks, made for
    the source, would otherwise be kept and the lines wrapped again), except an Example block, whose commands stay
    one a line, indented under it."""
    if not text:
        return text
    paragraphs = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = [line.strip() for line in para.splitlines() if line.strip()]
        if lines and lines[0].startswith("Example"):
            head, _, first = lines[0].partition(":")
            commands = [first.strip(), *lines[1:]] if first.strip() else lines[1:]
            paragraphs.append("\n".join([f"{head}:", *(f"  {c}" for c in commands)]))
        else:
            paragraphs.append(" ".join(lines))
    return "\n\n".join(paragraphs)


def _flags_without_values(params: list[Any]) -> list[Any]:
    """A flag takes no value: nothing beside it in the help (typer shows `<bool>`, yet `--json true` is refused)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """Every command's help: paragraphs rich wraps to the terminal, flags without a value, MODEL in the usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_values(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or str(param.name).upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    """The top level's help: flags without a value, as in each command's."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_values(super().get_params(ctx))


app = typer.Typer(
    name="lstm-inspect",
    cls=Group,
    help=(
        "Inspect Keras recurrent checkpoints (LSTM, GRU, SimpleRNN) without TensorFlow: each gate as its own "
        "matrix on \\[x; h], its shapes and settings; re-run the model exactly in NumPy, verify it or your own "
        "port against Keras, and name the porting mistake.\n\n"
        "Reads Keras 3 .keras and .weights.h5, legacy Keras 1/2 and tf.keras .h5 (full model or weights only), "
        "TF 2.12-2.15 .keras, SavedModel folders and TF weights checkpoints (cp.ckpt), CuDNN layers, "
        "Bidirectional, stacked and nested layers.\n\n"
        "Start with:  lstm-inspect show model.h5\n\n"
        "Exit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 a bug in lstm-inspect (the message "
        "says so; LSTM_INSPECT_DEBUG=1 shows the traceback), 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FORMAT_LABELS = {
    "keras3": "Keras .keras archive",
    "keras3-weights": "Keras 3 .weights.h5 (weights only)",
    "legacy-h5": "legacy HDF5 full model",
    "legacy-weights-h5": "legacy HDF5 weights only (save_weights)",
    "savedmodel": "TensorFlow SavedModel folder",
    "tf-checkpoint": "TensorFlow checkpoint (weights only)",
}


def clean(text: Any) -> str:
    """Any text printed: at most LINE_CHARS characters (the middle cut), control characters made visible, so
    one message stays one line of bounded length whatever names it quotes."""
    return shown(text, LINE_CHARS)


def named(text: Any, style: str = "") -> Text:
    """A name from the file (a layer, an output) as a literal Text, shortened to NAME_CHARS characters."""
    return Text(shown(text), style=style)


def lit(text: Any, style: str = "") -> Text:
    """A literal rich Text (never parsed as markup) of cleaned text."""
    return Text(clean(text), style=style)


def _width(console: Console, table: Table) -> int:
    """The width a table takes unwrapped (a table wider than the terminal is printed in a narrower form)."""
    return Measurement.get(console, console.options.update(max_width=10_000), table).maximum


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=stderr, markup=False, emoji=False)


def say(message: Any, stderr: bool = True) -> None:
    """One line for the user, printed literally (never wrapped: a log keeps one line per message)."""
    Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False).print(lit(message))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lstm-inspect {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", callback=_version,
                                 is_eager=True),
) -> None:
    """Inspect Keras recurrent checkpoints without TensorFlow."""


_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet", default=False)
PROGRESS_AFTER = 2.0  # seconds a command runs before its progress bar appears


_SPINNING: contextvars.ContextVar[bool] = contextvars.ContextVar("spinning", default=False)


@contextlib.contextmanager
def _status(text: str) -> Any:
    """A spinner on stderr while Keras starts (and the like); none with --quiet or off a terminal. No
    progress bar is drawn while it spins (one live display at a time)."""
    console = _console(stderr=True)
    if _QUIET.get() or not console.is_terminal:
        yield
        return
    token = _SPINNING.set(True)
    try:
        with console.status(text):
            yield
    finally:
        _SPINNING.reset(token)


@contextlib.contextmanager
def _progress_bar() -> Any:
    """Draw the library's progress reports (`lstm_inspect.base.progress`) as a rich bar on stderr, once the
    command has run PROGRESS_AFTER seconds; nothing with --quiet or when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lstm_inspect.base.progress import listening

    console = _console(stderr=True)
    if _QUIET.get() or not console.is_terminal:
        yield
        return
    start, bar, tasks = time.monotonic(), None, {}

    def listen(what: str, done: float, total: float | None) -> None:
        nonlocal bar
        if _SPINNING.get():
            return
        if bar is None:
            if time.monotonic() - start < PROGRESS_AFTER:
                return
            bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           console=console, transient=True)
            bar.start()
        if what not in tasks:
            tasks[what] = bar.add_task(clean(what), total=total)
        bar.update(tasks[what], completed=done, total=total)

    try:
        with listening(listen):
            yield
    finally:
        if bar is not None:
            bar.stop()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwound like Ctrl-C, so every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _run(action: Callable[[], int], quiet: bool = False, limits: tuple[str | None, int | None] = (None, None)) -> None:
    """Turn the library's InspectError into one line on stderr and exit 2; Ctrl-C (and SIGTERM, SIGHUP) into 130.

    `limits`: --max-memory and --max-steps of a command that runs the engine (`lstm_inspect.base.budget`).

    Anything else is a bug in lstm-inspect: one line saying so and exit 3 (LSTM_INSPECT_DEBUG=1
    shows the traceback); the fuzz tests treat it as a failure.
    """
    _QUIET.set(quiet)
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave the handlers alone
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        # NaN or Inf weights are reported once as a warning, not as NumPy's per-operation warnings
        with np.errstate(all="ignore"), _progress_bar(), budget.limited(budget.limits_from(*limits)):
            code = action()
    except InspectError as exc:
        say(f"lstm-inspect: {exc}")
        raise typer.Exit(EXIT_INPUT) from None
    except Terminated as exc:
        say(f"lstm-inspect: stopped by signal {exc.signum}; nothing was written")
        raise typer.Exit(128 + exc.signum) from None
    except KeyboardInterrupt:
        say("lstm-inspect: interrupted; nothing was written")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        say("lstm-inspect: not enough memory for this input")
        raise typer.Exit(EXIT_INPUT) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:  # the last line of defence, see the docstring
        if os.environ.get("LSTM_INSPECT_DEBUG"):
            raise
        detail = str(exc).splitlines()[0][:200] if str(exc).strip() else ""
        say(f"lstm-inspect: internal error, a bug in lstm-inspect ({type(exc).__name__}: {detail}); please report "
            "it with the command and the file; LSTM_INSPECT_DEBUG=1 shows the traceback")
        raise typer.Exit(EXIT_INTERNAL) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    raise typer.Exit(code)


def _done(ckpt: Checkpoint, code: int = EXIT_OK) -> int:
    """Finish a command: the warnings reading the weights raised (NaN or Inf), then the exit code."""
    for warning in ckpt.warnings:
        say(f"lstm-inspect: warning: {ckpt.file}: {warning}")
    return code


# ---------------------------------------------------------------- shared options, declared once

MODEL_ARG = typer.Argument(..., help="A Keras checkpoint: .keras, .h5 / .hdf5 (full model or weights), .weights.h5, "
                           "a SavedModel folder, or a TF checkpoint (its prefix, .index, a data shard or its folder).",
                           show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON instead of a table.")
CONFIG_OPT = typer.Option(None, "--config", help="The architecture of a weights-only MODEL (save_weights .h5, "
                          ".weights.h5 or TF checkpoint): its model.to_json() file, or a .keras's config.json.",
                          show_default=False)
LAYERS_OPT = typer.Option(
    None, "--layers", metavar="MODULE.py", show_default=False,
    help="Your own NumPy forms of the custom layers and Lambda layers the file names (README, 'Your own layers'): a "
    "Python module defining LAYERS = {class name or Lambda layer name: fn(config, weights, inputs, masks)}, and "
    "keras_classes(keras) for verify. It is imported and runs as YOUR code; the file's config only selects which of "
    "your functions runs, and nothing from the file (a class's code, a Lambda's bytecode) is ever run.")
DTYPES = {"float32": np.float32, "float64": np.float64}
DTYPE_OPT = typer.Option("float32", "--dtype", help="Arithmetic of the engine: float32 (as Keras) or float64.")


class Choice(str, Enum):
    """An option's fixed choices, which typer lists in the help and checks (an Enum: every typer this supports takes
    one); a member is the plain string it stands for."""

    def __str__(self) -> str:
        return str(self.value)


DType = Choice("DType", {name: name for name in DTYPES})  # type: ignore[misc]
TraceFormat = Choice("TraceFormat", {name: name for name in ("npz", "csv")})  # type: ignore[misc]
DumpFormat = Choice("DumpFormat", {name: name for name in ("csv", "npz", "json")})  # dump.FORMATS  # type: ignore[misc]
DumpLayout = Choice("DumpLayout", {name: name for name in ("gates", "keras", "pytorch", "onnx")})  # type: ignore[misc]
Target = Choice("Target", {name: name for name in ("onnx", "pytorch")})  # export.TARGETS  # type: ignore[misc]
FORCE_OPT = typer.Option(False, "--force", help="Replace an earlier output of lstm-inspect (written atomically "
                         "either way; never a folder lstm-inspect did not write, never the input).")
LAYER_OPT = typer.Option(None, "--layer", help="Run one recurrent layer alone (a name from `show`: a Bidirectional's "
                         "Keras name runs both directions and merges them as Keras does; a direction's own name runs "
                         "it alone) on an input of shape (batch, steps, N_i), or (steps, batch, N_i) for a time_major "
                         "layer, as it takes it.", metavar="NAME")
SEED_OPT = typer.Option(0, "--seed", min=0, metavar="N", help="Seed of the random input when --input is not given.")
STATE_OPT = typer.Option(None, "--initial-state", metavar="STATE.npy",
                         help="With --layer: start from these states (batch, N_c), one .npy "
                         "per state (LSTM: H.npy C.npy; GRU, SimpleRNN: H.npy) instead of zeros.", show_default=False)
INPUT_HELP = ("X: .npy (one input), .npz (one array per model input, in input order or by input name) or .csv "
              "(one 2-D sequence, steps × features, with no header).")
QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress bar or spinner on stderr (they appear only on a "
                         "terminal, and a bar only after about two seconds).")
MAX_MEMORY_OPT = typer.Option(
    None, "--max-memory", metavar="SIZE", show_default=False,
    help=f"Memory the engine may hold at once (tensors alive, and what the next layer would allocate), e.g. 8GB; "
    f"default {budget.DEFAULT_MAX_BYTES >> 30}GB or ${budget.ENV_MEMORY}. A file whose layers would need more is "
    "refused (exit 2) before anything is allocated.")
MAX_STEPS_OPT = typer.Option(
    None, "--max-steps", min=1, metavar="N", show_default=False,
    help=f"Recurrent steps the engine may run (steps × directions, summed over layers; a step of more than "
    f"{budget.STEP_WORK:,} multiply-adds, batch × (inputs + units) × gates × units, counts as that many times "
    f"{budget.STEP_WORK:,}; diagnose's runs share one budget); default {budget.DEFAULT_MAX_STEPS:,} or "
    f"${budget.ENV_STEPS}.")
ATOL_OPT = typer.Option(1e-5, "--atol", help="Absolute tolerance (finite, ≥ 0).")
RTOL_OPT = typer.Option(1e-4, "--rtol", help="Relative tolerance (finite, ≥ 0): ok where |ours - keras| <= atol + "
                        "rtol·|keras|.")


def _load(model: Path, config: Path | None, layers: Path | None) -> Checkpoint:
    """The checkpoint, after the user's own layers (--layers: their module, imported as their code) are registered."""
    if layers is not None:
        load_layers(layers)
    return load(model, config)


def _tolerances(atol: float, rtol: float) -> None:
    for name, value in (("--atol", atol), ("--rtol", rtol)):
        if not math.isfinite(value) or value < 0:
            raise InspectError(f"{name} must be a finite number ≥ 0, not {value}")


def _initial_state(paths: list[Path] | None, layer: str | None) -> list[np.ndarray] | None:
    if not paths:
        return None
    if layer is None:
        raise InspectError("--initial-state needs --layer: a whole model takes its states from its own graph")
    return [_single_input(p) for p in paths]


def _dtype(name: str) -> type:
    if name not in DTYPES:
        raise InspectError(f"--dtype must be float32 or float64, not {name!r}")
    return DTYPES[name]


def _model_inputs(ckpt: Checkpoint, path: Path) -> list[np.ndarray]:
    from lstm_inspect.engine.network import Network

    specs = Network(ckpt).input_specs()
    shape = specs[0][1] if len(specs) == 1 else None
    features = shape[-1] if shape is not None and len(shape) == 3 and specs[0][2] == "float" else None
    arrays = read_inputs(path, features)
    return ordered_inputs(arrays, [spec[0] for spec in specs])


def _single_input(path: Path, features: int | None = None) -> np.ndarray:
    arrays = read_inputs(path, features)
    if len(arrays) != 1:
        raise InspectError(f"{path}: --layer takes one input array, this file holds {len(arrays)}")
    return next(iter(arrays.values()))


def _inputs_for(ckpt: Checkpoint, path: Path, layer: str | None) -> list[np.ndarray]:
    """The input arrays for the whole model, or for one direction with --layer."""
    if layer is None:
        return _model_inputs(ckpt, path)
    return [_single_input(path, ckpt.directions_of(layer)[0].input_dim)]


def _inputs(*paths: Path | None) -> list[Path]:
    return [p for p in paths if p is not None]


# ---------------------------------------------------------------- show


@app.command(cls=Command)
def show(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """The model at a glance, and every recurrent direction with N_i, N_c, each gate's W_g shape and settings.

    As Keras's model.summary(): the model's inputs (steps and features, or token ids), each
    layer's output shape and parameters and, when the graph is not a chain, the layers it is fed;
    then each recurrent direction: N_i, N_c, each gate's W_g shape, activations and flags.
    Reads shapes and settings only, never weight data, so it is instant on any file size and
    never imports TensorFlow. Exits 2, after printing the table, when a shape does not fit.

    Example:  lstm-inspect show model.h5 --json
    """

    def action() -> int:
        ckpt = _load(model, config, layers)
        if as_json:
            own = [{"name": node.path, "class_name": node.class_name, "runs_with": None if mine is None else mine.label}
                   for node, mine in unknown_layers(ckpt.graph, {d.layer_path for d in ckpt.directions})]
            typer.echo(json.dumps({**ckpt.to_dict(), "summary": summarize(ckpt).to_dict(), "own_layers": own},
                                  indent=2))
        else:
            render_show(ckpt, _console())
        for problem in ckpt.all_problems:
            say(f"lstm-inspect: {ckpt.file}: {problem}")
        return EXIT_INPUT if ckpt.all_problems else EXIT_OK

    _run(action)


def _flags(d: RecurrentDirection) -> str:
    s = d.settings
    flags = [label for on, label in (
        (s.return_sequences, "seq"), (s.return_state, "state"), (s.go_backwards, "backwards"),
        (s.stateful, "stateful"), (s.time_major, "time-major"), (not s.use_bias, "no-bias"),
        *((True, flag) for flag in d.cell.flags(s)),
        (d.wrapper is not None and d.merge_mode is not None, f"merge={d.merge_mode}"),
        (d.storage == "cudnn", "cudnn-bias"), (d.storage == "keras1", "keras1-arrays"),
        (s.assumed, "assumed"),
    ) if on]
    return " ".join(flags) or "-"


FLAG_MEANINGS = {
    "seq": "return_sequences", "state": "return_state", "backwards": "go_backwards", "stateful": "stateful",
    "time-major": "time_major (input is steps × batch × features)", "no-bias": "use_bias=False",
    "cudnn-bias": "a CuDNN layer's input and recurrent biases", "keras1-arrays": "Keras 1's per-gate arrays",
    "assumed": "settings are the writing Keras's defaults, not read from the file",
}


def flags_legend(ckpt: Checkpoint) -> str | None:
    """The meaning of each flag the table shows (merge=... explains itself; a kind's own flags, its cell's)."""
    meanings = dict(FLAG_MEANINGS)
    for d in ckpt.directions:
        meanings.update(d.cell.flags(d.settings))
    used = dict.fromkeys(f for d in ckpt.directions for f in _flags(d).split() if f in meanings)
    return "flags: " + ", ".join(f"{f} = {meanings[f]}" for f in used) if used else None


def _gates_cell(d: RecurrentDirection) -> Text:
    shape = d.gate_shape()
    conv = d.settings.conv
    if conv is not None and shape:  # ConvLSTM: each gate's W_x and W_h convolution kernels, and the convolution
        k = "×".join(map(str, conv.kernel_size))
        text = Text(f"W_x {k}×{d.input_dim}×{d.units} W_h {k}×{d.units}×{d.units} {conv.padding} "
                    f"s{'×'.join(map(str, conv.strides))} d{'×'.join(map(str, conv.dilation_rate))}"
                    f"{' channels_first' if conv.data_format == 'channels_first' else ''} ")
    else:
        text = Text(f"{shape[0]}×{shape[1]} " if shape else "? ")
    if not d.weights_stored:
        text.append("∅" * d.cell.n_gates, style="yellow")
    elif d.shapes_ok:
        text.append("✓" * d.cell.n_gates, style="green")
    else:
        text.append("✗" * d.cell.n_gates, style="red")
    return text


def _legend(ckpt: Checkpoint) -> list[str]:
    lines = []
    for cell in dict.fromkeys(d.cell for d in ckpt.directions):
        lines.append(f"{cell.kind}: {cell.legend} {cell.legend_shapes} and a bias "
                     f"{'b_g' if cell.n_gates > 1 else 'b'} of N_c{cell.legend_extra}")
    lines.append("✓ the shapes check, ✗ they do not, ∅ no weights stored")
    return lines


def render_show(ckpt: Checkpoint, console: Console) -> None:
    version = ckpt.keras_version or "not recorded"
    console.print(lit(ckpt.file, "bold"), soft_wrap=True)  # a path is copied whole: never broken
    console.print(lit(f"format: {FORMAT_LABELS.get(ckpt.format, ckpt.format)} ({ckpt.format})"))
    console.print(lit(f"keras_version: {version}"))
    summary = summarize(ckpt)
    for inp in summary.inputs:
        console.print(Text("input ") + named(inp.name, "bold") + lit(f": {_input_text(inp)}"))
    if summary.layers:
        console.print(Text("model layers" + ("" if summary.is_chain else ", with the layers each one is fed"),
                           style="bold"))
        for table in (_model_table(summary, stacked=False), _model_table(summary, stacked=True)):
            if _width(console, table) <= console.width:
                console.print(table)
                break
        else:  # names too long for any table: one line per layer
            _model_lines(summary, console)
        for line in _summary_legend(summary):
            console.print(lit(line, "dim"))
        for line in own_layer_lines(ckpt):
            console.print(lit(line))
    elif ckpt.layers:  # no architecture: what the file stores, in its order (not a graph)
        stored = Text("stored layers, in file order: ")
        for k, m in enumerate(ckpt.layers):
            stored += Text(", " if k else "") + named(m.name) + lit(f" ({m.class_name})", "dim")
        console.print(stored)
    params = f"total params: {summary.total_params:,} (trainable {summary.trainable_params:,}, non-trainable " \
             f"{summary.total_params - summary.trainable_params:,})"
    console.print(lit(params + ("" if summary.params_complete else "; ? a layer whose weights are not stored")))
    console.print(Text("recurrent directions, in the order the model applies them", style="bold"))
    table = _show_table(ckpt)
    if _width(console, table) <= console.width:
        console.print(table)
    else:  # a table that would wrap mid-word: one block per direction instead
        _show_blocks(ckpt, console)
    for d in ckpt.directions:
        if d.initial_state_from:
            console.print(lit(f"{shown(d.name)} starts from {', '.join(map(shown, d.initial_state_from))}"))
    for line in _legend(ckpt):
        console.print(lit(line, "dim"))
    if legend := flags_legend(ckpt):
        console.print(lit(legend, "dim"))
    for note in ckpt.notes:
        text = Text("note: ", style="yellow")
        text.append(lit(note))
        console.print(text)


def own_layer_lines(ckpt: Checkpoint) -> list[str]:
    """One line per layer the engine does not know by itself: the user's function for it (--layers), or how to give
    one."""
    lines = []
    for node, mine in unknown_layers(ckpt.graph, {d.layer_path for d in ckpt.directions}):
        head = f"{shown(node.path)} ({shown(node.class_name)})"
        if mine is not None:
            lines.append(f"{head}: runs with your {shown(mine.label)}")
        else:
            lines.append(f"{head}: not a layer the engine runs; the whole model runs with your NumPy form of it "
                         "(--layers MODULE.py), its recurrent layers alone with --layer")
    return lines


def _summary_legend(summary: Any) -> list[str]:
    """What the layer table's two shorthands mean, when it uses them."""
    lines = []
    if any(s is None for m in summary.layers for s in m.output_shapes):
        lines.append("? a shape the config alone does not determine (lstm-inspect never guesses one)")
    if any("[" in f for m in summary.layers for f in m.inbound):
        lines.append("fed by: NAME[k][j] is output j of NAME's call k, as Keras writes it (an LSTM with "
                     "return_state: 0 its output, 1 h, 2 c); a bare NAME its first output")
    return lines


def _shape_text(shape: Any) -> str:
    """A shape as Keras prints it, batch axis first: (None, 10, 64); ? when the config does not tell it."""
    if shape is None:
        return "?"
    return "(" + ", ".join(map(str, (None, *shape))) + ("," if not shape else "") + ")"


def _input_text(inp: Any) -> str:
    shape = _shape_text(inp.shape)
    rank = None if inp.shape is None else len(inp.shape)
    if inp.takes == "token ids":
        vocab = f" in [0, {inp.vocabulary})" if inp.vocabulary is not None else ""
        return f"{shape} = (batch, steps) of token ids{vocab}" if rank == 1 else f"{shape} token ids{vocab}"
    return f"{shape} = (batch, steps, features)" if rank == 2 else shape


def _model_table(summary: Any, stacked: bool) -> Table:
    """Keras's model.summary() as a table: each layer's type, output shapes (one a line), parameters and, when the
    graph is not a chain, the layers it is fed (Keras's "Connected to"). `stacked`: the type under the name, for a
    narrow terminal."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("layer (type)" if stacked else "layer", no_wrap=True)
    if not stacked:
        table.add_column("type", no_wrap=True)
    table.add_column("output shape", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    if not summary.is_chain:
        table.add_column("fed by", no_wrap=True)
    for m in summary.layers:
        name = named(m.name)
        kind = lit(m.class_name, "dim")
        cells = [name + Text("\n") + kind] if stacked else [name, kind]
        cells.append(Text("\n").join(lit(_shape_text(s)) for s in m.output_shapes) if m.output_shapes else lit("?"))
        cells.append(lit("?" if m.params is None else f"{m.params:,}"))
        if not summary.is_chain:
            cells.append(Text("\n").join(named(n) for n in m.inbound) if m.inbound else lit("-", "dim"))
        table.add_row(*cells)
    return table


def _model_lines(summary: Any, console: Console) -> None:
    for m in summary.layers:
        line = named(m.name, "bold") + lit(f"  {m.class_name}  ") + lit(", ".join(map(_shape_text, m.output_shapes)))
        line += lit(f"  {'?' if m.params is None else format(m.params, ',')} params")
        if not summary.is_chain and m.inbound:
            line += Text("  fed by ") + Text(", ").join(named(n) for n in m.inbound)
        console.print(line)


def _show_table(ckpt: Checkpoint) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("layer", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("N_i", justify="right")
    table.add_column("N_c", justify="right")
    table.add_column("W_g, each gate", justify="right", no_wrap=True)
    table.add_column("activations", no_wrap=True)
    table.add_column("flags", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    for k, d in enumerate(ckpt.directions):
        table.add_row(str(k), named(d.name), lit(f"{d.kind} {''.join(d.cell.gates)}" if d.cell.n_gates > 1 else d.kind),
                      _num(d.input_dim), _num(d.units), _gates_cell(d),
                      lit(d.cell.activations_label(d.settings, d.hard_sigmoid)), lit(_flags(d)), f"{d.param_count:,}")
    return table


def _show_blocks(ckpt: Checkpoint, console: Console) -> None:
    """One block per direction: reads cleanly at 80 columns; a long name breaks only after a '/'."""
    for k, d in enumerate(ckpt.directions):
        lines = _wrap_at_slashes([shown(p) for p in d.parts], console.width - 6 - len(d.kind))
        head = Text(f"{k:>2}  ")
        head.append(lines[0], style="bold")
        if len(lines) == 1:
            head.append(lit(f"  {d.kind}"))
        console.print(head)
        for n, line in enumerate(lines[1:], 1):
            rest = Text("    ")
            rest.append(line, style="bold")
            if n == len(lines) - 1:
                rest.append(lit(f"  {d.kind}"))
            console.print(rest)
        line = Text(f"    N_i {_num(d.input_dim)}  N_c {_num(d.units)}  gates {' '.join(d.cell.gates)}: ")
        line.append(_gates_cell(d))
        line.append(f"  {d.param_count:,} params")
        console.print(line)
        console.print(lit(f"    {d.cell.activations_label(d.settings, d.hard_sigmoid)}   flags: {_flags(d)}"))


def _wrap_at_slashes(parts: list[str], width: int) -> list[str]:
    lines = [""]
    for k, part in enumerate(parts):
        piece = part + ("/" if k < len(parts) - 1 else "")
        if lines[-1] and len(lines[-1]) + len(piece) > max(width, 20):
            lines.append("")
        lines[-1] += piece
    return lines


# ---------------------------------------------------------------- forward, verify, trace


@app.command(cls=Command)
def forward(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    input: Path = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Y: .npy (the single output) or .npz (output_0, output_1, ...). "
                             "Missing folders are created."),
    layer: str | None = LAYER_OPT,
    initial_state: list[Path] | None = STATE_OPT,
    dtype: DType = DTYPE_OPT,
    force: bool = FORCE_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Run the model (or one recurrent direction) in NumPy, exactly as Keras computes it; no TensorFlow.

    Writes what model.predict returns. With --layer, the direction's output as the layer returns
    it: the whole sequence (in processing order, i.e. reversed for go_backwards) when
    return_sequences, else the last output. A Bidirectional's Keras name runs both directions
    and merges them as Keras does (output_0 and output_1 for merge_mode=None).

    Example:  lstm-inspect forward model.h5 --input x.npy --out y.npy
    """

    def action() -> int:
        ckpt = _load(model, config, layers)
        dt = _dtype(dtype)
        state = _initial_state(initial_state, layer)
        result = ckpt.forward(_inputs_for(ckpt, input, layer)[0] if layer is not None else
                              _model_inputs(ckpt, input), initial_state=state, layer=layer, dtype=dt)
        outs = result if isinstance(result, list) else [result]
        names = {f"output_{k}": o for k, o in enumerate(outs)}
        written = write_arrays(out, names, force, protect=_inputs(model, input, *(initial_state or [])))
        for name, o in names.items():
            say(f"{written}: {name} {tuple(o.shape)} {o.dtype}")
        return _done(ckpt)

    _run(action, quiet, (max_memory, max_steps))


@app.command(cls=Command)
def verify(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    input: Path | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + " Default: a seeded random input of "
                                         "the model's shape (token ids for Embedding models)."),
    against: Path | None = typer.Option(None, "--against", help="THEIRS: your reimplementation's outputs for the "
                                           "same input (.npy, or .npz output_0, ...), compared with Keras's instead."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME", help="Verify one recurrent layer alone (a "
                                        "direction, or a Bidirectional by its Keras name; works on weights-only files "
                                        "too); THEIRS may be its whole output sequence or its "
                                        "last step."),
    atol: float = ATOL_OPT,
    rtol: float = RTOL_OPT,
    seed: int = SEED_OPT,
    dtype: DType = DTYPE_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Check the engine (or your own reimplementation) against Keras itself on the same input.

    Runs the Keras that wrote the file: Keras 3 for 3.x files, tf_keras for older ones (the
    `keras` extra). The model is rebuilt from the parsed config with plain Keras layers only
    (safe mode: no Lambda, no custom objects), never loaded with Keras's own loader. Compares
    each top-level recurrent layer's output and the final outputs. Exit 0 when all match, 1 on a
    mismatch, 2 on bad input.

    Examples:  lstm-inspect verify model.h5
               lstm-inspect verify model.h5 --input x.npy --against my_port_outputs.npy
    """

    def action() -> int:
        from lstm_inspect.check.verify import check

        _tolerances(atol, rtol)
        ckpt = _load(model, config, layers)
        dt = _dtype(dtype)
        theirs = read_outputs(against) if against is not None else None
        xs = _inputs_for(ckpt, input, layer) if input is not None else None
        with _status("running Keras (importing TensorFlow)..."):
            report = check(ckpt, xs, theirs, layer, seed, atol, rtol, dt, against)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            render_verify(report, _console())
        return _done(ckpt, EXIT_OK if report.ok else EXIT_MISMATCH)

    _run(action, quiet, (max_memory, max_steps))


SPARK = "▁▂▃▄▅▆▇█"
SPARK_MIN = 8  # fewer columns than this left for the bars: they go below the table, one row per output


def spark_scale(comparisons: list[Any], atol: float) -> tuple[float, float]:
    """One log scale for every row's bars: ▁ at or below atol/1000, █ at the largest error, or at atol when every
    error is below it (so a passing output never fills the bar)."""
    largest = max((max(c.per_step) for c in comparisons if c.per_step), default=0.0)
    lo = max(atol / 1000, 1e-12)
    hi = max(atol, largest, lo * 10)
    return lo, hi


def sparkline(values: list[float], scale: tuple[float, float], per: int = 1) -> str:
    """Error per time step on the shared log `scale`, `per` steps a character (the largest error of its steps)."""
    per = max(1, per)
    bins = [max(values[k:k + per]) for k in range(0, len(values), per)]
    lo, hi = np.log10(scale[0]), np.log10(scale[1])
    bars = []
    for v in bins:
        level = (np.log10(max(v, 1e-300)) - lo) / (hi - lo) if math.isfinite(v) else 1.0
        bars.append(SPARK[int(np.clip(level, 0, 0.999) * len(SPARK))])
    return "".join(bars)


def _verify_rows(report: Any) -> list[list[Text]]:
    rows = []
    for c in report.comparisons:
        first = "-" if c.first_bad is None else ", ".join(f"{k} {v}" for k, v in c.first_bad.items())
        rows.append([named(c.name), lit("×".join(map(str, c.shape))), lit(f"{c.max_abs:.2e}"), lit(f"{c.max_rel:.2e}"),
                     Text("✓", style="green") if c.ok else Text("✗", style="red"), lit(first)])
    return rows


def _verify_table(report: Any, bars: list[Text] | None, bar_title: str) -> Table:
    """The comparison table; the "first past tolerance" column only when an output fails."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    failing = not report.ok
    for col in ("output", "shape", "max |Δ|", "max rel", "ok", *(["first past\ntolerance"] if failing else [])):
        table.add_column(col, no_wrap=True, justify="center" if col == "ok" else "left")
    if bars is not None:
        table.add_column(bar_title, no_wrap=True)
    for row, bar in zip(_verify_rows(report), bars or [None] * len(report.comparisons)):
        table.add_row(*(row if failing else row[:-1]), *([bar] if bars is not None else []))
    return table


def _bars(report: Any, scale: tuple[float, float], per: int) -> list[Text]:
    return [Text(sparkline(c.per_step, scale, per) if c.per_step else "",
                 style="green" if c.ok else "red") for c in report.comparisons]


def _bar_title(per: int) -> str:
    return "|Δ| per step" if per == 1 else f"|Δ| per {per} steps"


def _verify_blocks(report: Any, console: Console, bars: list[Text], bar_title: str) -> None:
    """One block per output, for names too long for a table row: the name on its own line, then its figures, then
    its bars."""
    for c, row, bar in zip(report.comparisons, _verify_rows(report), bars):
        console.print(row[0])
        line = Text("    ") + row[1] + Text("  max |Δ| ") + row[2] + Text("  max rel ") + row[3] + Text("  ") + row[4]
        line += Text(" within tolerance" if c.ok else " past tolerance")
        console.print(line)
        if c.first_bad:
            console.print(Text("    first past tolerance: ") + row[5])
        if c.per_step:
            console.print(Text(f"    {bar_title}: ") + bar if len(bar) + len(bar_title) + 6 <= console.width
                          else Text("    ") + bar)


def render_verify(report: Any, console: Console) -> None:
    """The comparison table, each sequence's error per step as one row of bars that fits the terminal (the steps
    binned when they outnumber its columns), on one log scale shared by every row and stated below."""
    what = f"theirs ({report.against})" if report.against else "the NumPy engine"
    console.print(lit(f"{report.file}", "bold"), soft_wrap=True)  # a path is copied whole: never broken
    console.print(lit(f"{what} vs {report.reference}"))
    console.print(lit(f"tolerance: |Δ| ≤ {report.atol:g} + {report.rtol:g}·|keras|"))
    sequences = [c for c in report.comparisons if c.per_step]
    scale = spark_scale(sequences, report.atol)
    longest = max((len(c.per_step) for c in sequences), default=0)
    width = console.width
    per, table = 0, None
    if sequences and _width(console, _verify_table(report, None, "")) <= width:
        tried = set()
        for bins in range(min(longest, width), min(SPARK_MIN, longest) - 1, -1):  # the finest binning that fits
            per = math.ceil(longest / bins)
            if per in tried:
                continue
            tried.add(per)
            table = _verify_table(report, _bars(report, scale, per), _bar_title(per))
            if _width(console, table) <= width:
                break
        else:
            per, table = 0, None
    if table is not None:
        console.print(table)
    elif _width(console, _verify_table(report, None, "")) <= width:
        console.print(_verify_table(report, None, ""))
        if sequences:  # the bars below, beside each output's name
            widest = max(len(shown(c.name)) for c in sequences)
            per = max(1, math.ceil(longest / max(width - widest - 3, SPARK_MIN)))
            console.print(lit(_bar_title(per), "bold"))
            for c, bar in zip(report.comparisons, _bars(report, scale, per)):
                if c.per_step:
                    console.print(named(c.name) + Text(" " * (widest - len(shown(c.name)) + 3)) + bar)
    else:  # names too long for a table: one block per output
        per = max(1, math.ceil(longest / max(width - 4, SPARK_MIN)))
        _verify_blocks(report, console, _bars(report, scale, per), _bar_title(per))
    if sequences:
        steps = "a step" if per == 1 else f"{per} steps"
        marks = f"{SPARK[0]} ≤ {scale[0]:.1e}, " + (
            f"{SPARK[-1]} ≥ {scale[1]:.1e} (atol)" if scale[1] == report.atol else
            f"{sparkline([report.atol], scale)} ≈ {report.atol:.1e} (atol), {SPARK[-1]} ≥ {scale[1]:.1e} "
            "(the largest |Δ|)")
        console.print(lit(f"{_bar_title(per)}: each character the largest |Δ| of {steps} over samples and units, on "
                          f"one log scale for every row: {marks}", "dim"))
    for note in report.notes:
        console.print(Text("note: ", style="yellow") + lit(note))
    if report.ok:
        widened = " widened by the model's float32 sensitivity (see the note)" if report.sensitivity else ""
        console.print(Text("match", style="green") + Text(f": every output within tolerance{widened}"))
    else:
        bad = [c for c in report.comparisons if not c.ok]
        first = bad[0]
        ev = first.evidence
        growth = f" {'; '.join(ev.lines())}: {ev.hint()}." if ev is not None else ""
        console.print(Text("mismatch", style="red") + lit(f": {len(bad)} of {len(report.comparisons)} outputs "
                                                          f"differ; first: {shown(first.name)}.{growth}"))


@app.command(cls=Command)
def trace(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    input: Path = typer.Option(..., "--input", "-i", help=INPUT_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="T.npz, or a folder for --format csv."),
    fmt: TraceFormat | None = typer.Option(None, "--format", help="npz (the default, whatever the name of --out) "
                                           "or csv (a folder)."),
    layer: str | None = LAYER_OPT,
    initial_state: list[Path] | None = STATE_OPT,
    dtype: DType = DTYPE_OPT,
    force: bool = FORCE_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Golden values for porters: every direction's input, mask, gates and states at every time step.

    LSTM: z (pre-activations, 4·units, gates i, f, c, o), i, f, c_tilde, o, c, h; GRU: z, r,
    h_tilde, h; SimpleRNN: pre, h. Shapes (batch, steps, units), in processing order: for a
    go_backwards direction, step k consumed input step steps-1-k. Per direction also x (batch,
    steps, N_i), the input it consumed at each step (e.g. an Embedding's vectors), and mask
    (batch, steps), 1 where the step was processed (all 1 when nothing masks the layer). At a
    masked step the gates are what the cell computed there (Keras computes and discards them)
    and the states (h, c) are the held state: the last processed step's, or the initial state.
    --layer takes a direction's name or a Bidirectional's Keras name (both directions).

    Example:  lstm-inspect trace model.h5 --input x.npy --out trace.npz
    """

    def action() -> int:
        ckpt = _load(model, config, layers)
        dt = _dtype(dtype)
        kind = fmt or ("csv" if out.suffix == "" and out.is_dir() else "npz")
        if kind not in ("npz", "csv"):
            raise InspectError(f"--format must be npz or csv, not {kind!r}")
        state = _initial_state(initial_state, layer)
        traced = ckpt.trace(_inputs_for(ckpt, input, layer), layer=layer, initial_state=state, dtype=dt)
        arrays = traced.arrays()
        written = write_trace(out, arrays, kind, force, protect=_inputs(model, input, *(initial_state or [])))
        say(f"{out}: {len(written)} arrays for {len(arrays)} recurrent direction(s)")
        return _done(ckpt)

    _run(action, quiet, (max_memory, max_steps))


# ---------------------------------------------------------------- stats, dump, plot


@app.command(cls=Command)
def stats(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    input: Path | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + " For the activation statistics; "
                                         "default: a seeded random input of the model's shape."),
    seed: int = SEED_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Per-gate statistics of the weights and of the gates' activations.

    Weights, per gate and per block (input W_x, recurrent W_h, bias b): mean, std, min, max,
    Frobenius norm, max |w|, fraction near zero (|w| < 1e-3), NaN/Inf counts; for each recurrent
    block its spectral norm and stable rank. Activations from an engine run: per gate mean, std
    and the fractions left- (< 0.1) and right-saturated (> 0.9), as in Karpathy et al. (2015);
    ranges of c and h; units whose h never changes. Masked steps are left out.

    Example:  lstm-inspect stats model.h5 --input x.npy
    """

    def action() -> int:
        from lstm_inspect.check.stats import collect

        ckpt = _load(model, config, layers)
        xs = _model_inputs(ckpt, input) if input is not None else None
        report = collect(ckpt, xs, seed)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            render_stats(report, _console())
        return _done(ckpt)

    _run(action, quiet, (max_memory, max_steps))


def _print_table(console: Console, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], left: int,
                 keep: int = 2) -> None:
    """One table, or, when it would not fit the terminal, two: the first `keep` columns repeated in each, the
    other columns split between them (numbers are never cut short). Each under its title, a line of its own (a
    table's own title wraps to the table's width)."""

    def table(cols: list[int]) -> Table:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for k in cols:
            t.add_column(columns[k], justify="left" if k < left else "right", no_wrap=True)
        for row in rows:
            t.add_row(*(lit(row[k]) for k in cols))
        return t

    whole = table(list(range(len(columns))))
    if _width(console, whole) <= console.width:
        console.print(lit(title, "italic"))
        console.print(whole)
        return
    rest = list(range(keep, len(columns)))
    half = (len(rest) + 1) // 2
    for part, cols in ((1, rest[:half]), (2, rest[half:])):
        console.print(lit(f"{title} ({part} of 2)", "italic"))
        console.print(table(list(range(keep)) + cols))


def render_stats(report: Any, console: Console) -> None:
    console.print(lit(report.file, "bold"), soft_wrap=True)  # a path is copied whole: never broken
    console.print(lit(f"activations from {report.activations_from}"))
    console.print(lit("≈0: fraction with |w| < 1e-3; σ_max: largest singular value; st.rank: stable rank "
                      "‖U‖_F² / σ_max²", "dim"))
    for st in report.directions:
        columns = ("gate", "block", "shape", "mean", "std", "min", "max", "‖·‖_F", "max|w|", "≈0", "NaN/Inf",
                   "σ_max", "st.rank")
        rows = [(g, block, "×".join(map(str, b.shape)), f"{b.mean:+.3f}", f"{b.std:.3f}", f"{b.min:+.3f}",
                 f"{b.max:+.3f}", f"{b.frobenius:.3f}", f"{b.max_abs:.3f}", f"{b.near_zero:.1%}", f"{b.nan}/{b.inf}",
                 "" if b.spectral_norm is None else f"{b.spectral_norm:.3f}",
                 "" if b.stable_rank is None else f"{b.stable_rank:.2f}")
                for g, blocks in st.weights.items() for block, b in blocks.items()]
        _print_table(console, f"{shown(st.name)}: weights", columns, rows, left=3)
        if st.activations:
            # a title of its own: a table's title wraps to the table's width
            console.print(lit(f"{shown(st.name)}: activations over {st.steps_used} (sample, step) pairs", "italic"))
            act = Table(box=box.SIMPLE_HEAD, pad_edge=False)
            for col in ("gate", "mean", "std", "left-saturated", "right-saturated"):
                act.add_column(col, justify="left" if col == "gate" else "right")
            for g, a in st.activations.items():
                act.add_row(g, f"{a.mean:+.3f}", f"{a.std:.3f}", f"{a.left_saturated:.1%}", f"{a.right_saturated:.1%}")
            console.print(act)
            dead = ", ".join(map(str, st.dead_units)) if st.dead_units else "none"
            ranges = ""
            if st.c_range is not None:
                ranges += f"c in [{st.c_range[0]:+.3f}, {st.c_range[1]:+.3f}]   "
            if st.h_range is not None:
                ranges += f"h in [{st.h_range[0]:+.3f}, {st.h_range[1]:+.3f}]   "
            console.print(lit(f"{ranges}units whose h never changes: {dead}"))
        for note in st.notes:
            console.print(Text("note: ", style="yellow") + lit(note))
        console.print()


@app.command(cls=Command)
def dump(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    out: Path = typer.Option(..., "--out", "-o", help="A folder to create (missing parents too; an earlier dump is "
                             "replaced only with --force)."),
    fmt: DumpFormat = typer.Option("csv", "--format", help="How the files are written."),
    layout: DumpLayout = typer.Option(
        "gates", "--layout", help="gates (W_g and b_g per gate), keras (kernel, recurrent_kernel, bias), pytorch "
        "(torch.nn.LSTM/GRU/RNN state_dict) or onnx (W, R, B of the ONNX operator)."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME", help="Only this recurrent layer (a name "
                                        "from `show`; a Bidirectional's Keras name means both its directions)."),
    force: bool = FORCE_OPT,
) -> None:
    """Write the gate matrices to files, in the layout your port needs, with a manifest.json.

    gates: DIR/<layer>/W_<g>.csv (N_c rows × N_i + N_c columns, header x0.., h0..) and b_<g>.csv
    per gate. CSVs start with a header row: numpy.loadtxt(f, delimiter=",", skiprows=1). Values
    have 9 significant digits, which read back bit for bit as float32. pytorch: the module's
    state_dict names and gate order; onnx: W, R, B in ONNX's gate order and the operator's
    attributes. manifest.json says what each file is and how the target must run it (time order,
    activations, exact_in_target). Layer names are escaped into file names (%XX). Written atomically.

    Example:  lstm-inspect dump model.h5 --out gates/ --layout pytorch --format npz
    """

    def action() -> int:
        from lstm_inspect.dump import dump as write_dump

        ckpt = load(model, config)
        written, warnings = write_dump(ckpt, out, fmt, layout, layer, force)
        for warning in warnings:
            say(f"lstm-inspect: warning: {warning}")
        say(f"{out}: {len(written)} files and manifest.json ({layout}, {fmt})")
        return _done(ckpt)

    _run(action)


@app.command(cls=Command)
def export(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    to: Target = typer.Option(..., "--to", help="onnx (one .onnx file) or pytorch (a folder: model.py, "
                              "weights.safetensors, README.md).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx file or the PyTorch folder to write (missing parents "
                             "are created; an earlier export is replaced only with --force).", show_default=False),
    opset: int | None = typer.Option(None, "--opset", metavar="N",
                                     help="ONNX opset to write (14 to the installed onnx's newest; "
                                     "default 17).", show_default=False),
    input: Path | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + " Verifies the export on it; default: "
                                         "a seeded random input of the model's shape (token ids for Embedding "
                                         "models)."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME",
                                        help="Export one recurrent layer alone, from zero states, "
                                        "unmasked (works on weights-only files too): x (batch, steps, N_i) in. A "
                                        "direction gives its output sequence in processing order and its final "
                                        "states; a Bidirectional (its Keras name) what Keras's layer gives."),
    atol: float = ATOL_OPT,
    rtol: float = RTOL_OPT,
    seed: int = SEED_OPT,
    force: bool = FORCE_OPT,
    require_verified: bool = typer.Option(False, "--require-verified", help="Exit 1 when the export could not be "
                                          "verified (its runtime is not installed); without it such an export "
                                          "exits 0 with a warning on stderr."),
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Write a runnable port of the model, ONNX or PyTorch, without TensorFlow, then verify it.

    ONNX: one graph of standard operators (recurrent layers as ONNX LSTM/GRU/RNN where they compute
    exactly what Keras computes, padding masks through sequence_lens, other masks and activations
    as a Scan over the step equations); checked with onnx.checker. PyTorch: model.py, one
    torch.nn.Module written for this model (one attribute per Keras layer), weights.safetensors
    and a README with the lines that load and run it; writing needs no torch.

    After writing, the export is run by its runtime (onnxruntime, torch) when installed and
    compared with the NumPy engine (which `verify` checks against Keras). Exit 0 when it matches,
    1 on a mismatch (the export is kept), 2 when the model cannot be exported exactly (nothing is
    written). Without the runtime the export is written unverified: exit 0 and a warning on stderr,
    or exit 1 with --require-verified.

    Examples:  lstm-inspect export model.h5 --to onnx --out model.onnx
               lstm-inspect export model.keras --to pytorch --out port/ --input x.npy
    """

    def action() -> int:
        from lstm_inspect.export import export as write_export

        _tolerances(atol, rtol)
        ckpt = load(model, config)
        xs = None
        if input is not None:
            xs = _inputs_for(ckpt, input, layer)
        with _status(f"writing {to} and running it..."):
            report = write_export(ckpt, to, out, layer=layer, opset=opset, xs=xs,
                                  input_label=f"the input {input}" if input is not None else None, seed=seed,
                                  force=force, protect=_inputs(model, config, input), atol=atol, rtol=rtol)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            say(f"{report.out}: {report.what} as {to} ({', '.join(report.written)})", stderr=False)
            for note in report.notes:
                say(f"note: {note}", stderr=False)
            say(report.summary(), stderr=False)
            if not report.ok and not report.run_failed:
                bad = next(c for c in report.comparisons if not c.ok)
                say(f"{shown(bad.name)}: max |Δ| {bad.max_abs:.2e} past the tolerance {atol:g} + {rtol:g}·|y|; "
                    "the export was kept for inspection", stderr=False)
        if report.not_verified:
            say(f"lstm-inspect: warning: {report.out} was written but NOT verified: {report.not_verified}"
                + ("" if require_verified else "; --require-verified makes this exit 1"))
            if require_verified:
                return _done(ckpt, EXIT_MISMATCH)
        return _done(ckpt, EXIT_OK if report.ok else EXIT_MISMATCH)

    _run(action, quiet, (max_memory, max_steps))


@app.command(cls=Command)
def plot(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    out: Path = typer.Option(..., "--out", "-o", help="A folder to create (an earlier plot is replaced only with "
                             "--force)."),
    input: Path | None = typer.Option(None, "--input", "-i", help=INPUT_HELP + " For the activation plot; default: "
                                         "a seeded random input."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME",
                                        help="Only this recurrent layer (a direction, or both "
                                        "directions of a Bidirectional by its Keras name)."),
    seed: int = SEED_OPT,
    force: bool = FORCE_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Draw each recurrent direction: gate heatmaps, biases, recurrent spectra, activations over time (PNG).

    Per direction, DIR/<layer>/weights.png (each W_g, input and recurrent columns split by a
    line), biases.png, spectrum.png (singular values of each U_g) and activations.png (one
    sample: the mean and a few units of each gate and state over time). Needs matplotlib.

    Example:  lstm-inspect plot model.h5 --out plots/
    """

    def action() -> int:
        from lstm_inspect.plot import plot as draw

        ckpt = _load(model, config, layers)
        xs = _model_inputs(ckpt, input) if input is not None else None
        written, source = draw(ckpt, out, xs, seed, force, layer)
        say(f"{out}: {len(written)} PNGs (activations from {source})")
        return _done(ckpt)

    _run(action, quiet, (max_memory, max_steps))


# ---------------------------------------------------------------- diagnose


@app.command(cls=Command)
def diagnose(
    model: Path = MODEL_ARG,
    config: Path | None = CONFIG_OPT,
    layers: Path | None = LAYERS_OPT,
    input: Path = typer.Option(..., "--input", "-i", help="X, the input you gave your reimplementation."),
    against: Path = typer.Option(..., "--against", help="THEIRS: its outputs (.npy, or .npz output_0, ...)."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME", help="THEIRS is one recurrent layer's output (a "
                                        "direction's, or a Bidirectional's merged as Keras merges it; its whole "
                                        "sequence or its last step) for an input (batch, steps, N_i)."),
    atol: float = ATOL_OPT,
    rtol: float = RTOL_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = QUIET_OPT,
    max_memory: str | None = MAX_MEMORY_OPT,
    max_steps: int | None = MAX_STEPS_OPT,
) -> None:
    """Tell why your port does not match Keras: which porting mistake reproduces your outputs.

    Re-runs the engine (which reproduces Keras) under each mistake porters make, one at a time
    and in pairs: every wrong gate order, the other hard_sigmoid or sigmoid, other activations, a
    dropped bias or CuDNN bias half, transposed or swapped blocks, time reversed, masks mishandled,
    states not carried, reduced precision, and for GRUs z used the other way round and the reset
    gate applied before or after the product. Exit 0 when THEIRS already matches, 1 on a mismatch
    (diagnosed or not), 2 on bad input.

    Example:  lstm-inspect diagnose model.h5 --input x.npy --against my_port.npy
    """

    def action() -> int:
        from lstm_inspect.check.diagnose import diagnose_port

        _tolerances(atol, rtol)
        ckpt = _load(model, config, layers)
        theirs = read_outputs(against)
        xs = _inputs_for(ckpt, input, layer)
        result = diagnose_port(ckpt, xs, theirs, layer, atol, rtol)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            render_diagnosis(result, _console())
        return _done(ckpt, EXIT_OK if result.matches else EXIT_MISMATCH)

    _run(action, quiet, (max_memory, max_steps))


def render_diagnosis(result: Any, console: Console) -> None:
    if result.matches:
        console.print(Text("match", style="green") + lit(f": THEIRS equals what Keras computes for {result.file} "
                                                         f"(max |Δ| {max(c.max_abs for c in result.baseline):.2e})"))
        return
    worst = max(c.max_abs for c in result.baseline)
    console.print(Text("mismatch", style="red") + lit(f": THEIRS differs from what Keras computes for {result.file} by "
                                                      f"up to {worst:.3g}"))
    found = result.found
    if found:
        for rank, h in enumerate(found, 1):
            said = "reproduces THEIRS exactly" if h.exact else \
                "is consistent with THEIRS (within its rounding noise; no mistake reproduces it exactly)"
            console.print(lit(f"{rank}. ") + lit(h.name, "bold") + lit(f" {said} (max |Δ| {h.max_abs:.2e})."))
            console.print(lit(f"   fix: {h.fix}"))
        if sum(h.exact for h in found) > 1:
            console.print(lit(f"these {sum(h.exact for h in found)} reproduce THEIRS alike on this input, which cannot "
                              "tell them apart (the narrowest first); an input that does (other padding, more samples "
                              "or steps) decides between them"))
    elif result.close:
        console.print(lit("none of the porting mistakes lstm-inspect knows reproduces THEIRS; close (each cuts the "
                          "largest |Δ| 10x or more):"))
        for h in result.close[:3]:
            console.print(lit(f"   {h.name} (max |Δ| {h.max_abs:.3g}); fix: {h.fix}"))
    else:
        ruled = f" ({result.pruned} ruled out by the evidence)" if result.pruned else ""
        console.print(lit(f"none of the porting mistakes lstm-inspect knows comes close{ruled}: none cuts the "
                          "largest |Δ| 10x; the evidence:"))
    console.print(lit(result.divergence))
    for label, line in result.gates.labelled() if result.gates is not None else []:
        console.print(lit(f"{label}: {line}"))


def _num(n: int | None) -> str:
    return "?" if n is None else str(n)


def entry() -> Any:
    """Console-script entry point."""
    return app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app(prog_name="lstm-inspect"))
