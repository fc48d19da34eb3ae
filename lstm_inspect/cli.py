"""The `lstm-inspect` command: parse arguments, call the library, render. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import typer
from rich import box
from rich.console import Console
from rich.table import Table

from lstm_inspect import __version__
from lstm_inspect.arrays_io import TRACE_QUANTITIES, ordered_inputs, read_inputs, write_arrays, write_trace
from lstm_inspect.errors import InspectError
from lstm_inspect.gates import GATES
from lstm_inspect.model import Checkpoint, LSTMDirection, load

EXIT_OK, EXIT_MISMATCH, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="lstm-inspect",
    help=(
        "Inspect Keras LSTM checkpoints without TensorFlow: the gates W_i, W_f, W_c, W_o of every LSTM, "
        "their shapes and settings.\n\n"
        "Reads Keras 3 .keras and .weights.h5, legacy Keras 1/2 and tf.keras .h5 (full model or weights only), "
        "CuDNNLSTM, Bidirectional, stacked and nested LSTMs.\n\n"
        "Start with:  lstm-inspect show model.h5\n\n"
        "Exit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 130 interrupted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FORMAT_LABELS = {
    "keras3": "Keras 3 .keras archive",
    "keras3-weights": "Keras 3 .weights.h5 (weights only)",
    "legacy-h5": "legacy HDF5 full model",
    "legacy-weights-h5": "legacy HDF5 weights only (save_weights)",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lstm-inspect {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", help="Print the version and exit.", callback=_version,
                                 is_eager=True),
) -> None:
    """Inspect Keras LSTM checkpoints without TensorFlow."""


def _run(action: Callable[[], int]) -> None:
    """Turn the library's InspectError into one line on stderr and exit 2; Ctrl-C into 130.

    Anything else is a bug in lstm-inspect met on a strange input: still one line and exit 2 for
    the user (LSTM_INSPECT_DEBUG=1 shows the traceback), and the fuzz tests treat it as a failure.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        # NaN or Inf weights are reported once as a warning, not as NumPy's per-operation warnings
        with np.errstate(all="ignore"):
            code = action()
    except InspectError as exc:
        err.print(f"lstm-inspect: {exc}", markup=False)
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt:
        err.print("lstm-inspect: interrupted; nothing was written", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        err.print("lstm-inspect: not enough memory for this input", markup=False)
        raise typer.Exit(EXIT_INPUT) from None
    except (typer.Exit, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001: the last line of defence, see the docstring
        if os.environ.get("LSTM_INSPECT_DEBUG"):
            raise
        err.print(f"lstm-inspect: internal error ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                  "please report it with the file; LSTM_INSPECT_DEBUG=1 shows the traceback", markup=False)
        raise typer.Exit(EXIT_INPUT) from None
    raise typer.Exit(code)


def _done(ckpt: Checkpoint, code: int = EXIT_OK) -> int:
    """Finish a command: the warnings reading the weights raised (NaN or Inf), then the exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in ckpt.warnings:
        err.print(f"lstm-inspect: warning: {ckpt.file}: {warning}", markup=False)
    return code


MODEL_ARG = typer.Argument(..., help="A Keras checkpoint: .keras, .h5 / .hdf5 (full model or weights), .weights.h5.",
                           show_default=False)


@app.command()
def show(
    model: Path = MODEL_ARG,
    as_json: bool = typer.Option(False, "--json", help="Print the same facts as a JSON object."),
) -> None:
    """List every LSTM direction with N_i, N_c, the four gate shapes, activations and flags.

    Reads shapes and settings only, never weight data, so it is instant on any file size and
    never imports TensorFlow. Exits 2, after printing the table, when a shape does not fit.

    Example:  lstm-inspect show model.h5 --json
    """

    def action() -> int:
        ckpt = load(model)
        if as_json:
            typer.echo(json.dumps(ckpt.to_dict(), indent=2))
        else:
            render_show(ckpt, Console(highlight=False))
        if ckpt.all_problems:
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            for problem in ckpt.all_problems:
                err.print(f"lstm-inspect: {ckpt.file}: {problem}", markup=False)
            return EXIT_INPUT
        return EXIT_OK

    _run(action)


def _flags(d: LSTMDirection) -> str:
    s = d.settings
    flags = [label for on, label in (
        (s.return_sequences, "seq"), (s.return_state, "state"), (s.go_backwards, "backwards"),
        (s.stateful, "stateful"), (not s.use_bias, "no-bias"),
        (d.wrapper is not None and d.merge_mode is not None, f"merge={d.merge_mode}"),
        (d.storage == "cudnn", "cudnn-bias"), (d.storage == "keras1", "keras1-arrays"),
    ) if on]
    return " ".join(flags) or "-"


FLAGS_LEGEND = (
    "flags: seq = return_sequences, state = return_state, backwards = go_backwards, "
    "cudnn-bias = CuDNNLSTM's two biases (8·N_c, summed), keras1-arrays = Keras 1's 12 per-gate arrays"
)


def _recurrent_activation(d: LSTMDirection) -> str:
    ra = d.settings.recurrent_activation
    if ra == "hard_sigmoid":
        return "hard_sigmoid (x/6+0.5)" if d.hard_sigmoid == "keras3" else "hard_sigmoid (0.2x+0.5)"
    return ra


def render_show(ckpt: Checkpoint, console: Console) -> None:
    version = ckpt.keras_version or "not recorded"
    console.print(f"[bold]{ckpt.file}[/bold]")
    console.print(f"format: {FORMAT_LABELS.get(ckpt.format, ckpt.format)} ({ckpt.format})   keras_version: {version}")
    if ckpt.model_layers:
        chain = " → ".join(f"{m.name} [dim]({m.class_name})[/dim]" for m in ckpt.model_layers)
        console.print(f"layers: {chain}")
    table = Table(title="LSTM directions, in the order the model applies them", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("layer", overflow="fold")
    show_kind = any(d.kind != "LSTM" for d in ckpt.layers)
    if show_kind:
        table.add_column("kind", overflow="fold")
    table.add_column("N_i", justify="right")
    table.add_column("N_c", justify="right")
    table.add_column(" ".join(f"W_{g}" for g in GATES), justify="right")
    table.add_column("activations", overflow="fold")
    table.add_column("flags")
    table.add_column("params", justify="right")
    for k, d in enumerate(ckpt.layers):
        shape = d.gate_shape()
        mark = "[green]✓[/green]" if d.shapes_ok else "[red]✗[/red]"
        if not d.weights_stored:
            mark = "[yellow]∅[/yellow]"
        gates = f"{shape[0]}×{shape[1]} " if shape else "? "
        table.add_row(
            str(k), d.name, *([d.kind] if show_kind else []), _num(d.input_dim), _num(d.units),
            gates + mark * len(GATES), f"{d.settings.activation}/{_recurrent_activation(d)}", _flags(d),
            f"{d.param_count:,}",
        )
    console.print(table)
    for d in ckpt.layers:
        if d.initial_state_from:
            console.print(f"{d.name} starts from {', '.join(d.initial_state_from)}", markup=False)
    console.print("[dim]each gate g = i, f, c, o has W_g of N_c × (N_i + N_c) acting on \\[x; h] and a bias b_g "
                  "of N_c; ✓ its shapes check, ✗ they do not, ∅ no weights stored[/dim]")
    console.print(f"[dim]{FLAGS_LEGEND}[/dim]")
    for note in ckpt.notes:
        console.print(f"[yellow]note:[/yellow] {note}", markup=True)


DTYPES = {"float32": np.float32, "float64": np.float64}
DTYPE_OPT = typer.Option("float32", "--dtype", help="Arithmetic of the engine: float32 (as Keras) or float64.")
FORCE_OPT = typer.Option(False, "--force", help="Replace the output if it exists (written atomically either way).")
LAYER_OPT = typer.Option(None, "--layer", help="Run one LSTM direction alone (a name from `show`) on an input of "
                         "shape (batch, steps, N_i).")
SEED_OPT = typer.Option(0, "--seed", help="Seed of the random input when --input is not given.")
STATE_OPT = typer.Option(None, "--initial-state", help="With --layer: start from H.npy and C.npy (batch, N_c) "
                         "instead of zeros.", show_default=False)


def _initial_state(paths: Optional[tuple[Path, Path]], layer: Optional[str]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    if not paths:
        return None
    if layer is None:
        raise InspectError("--initial-state needs --layer: a whole model takes its states from its own graph")
    h, c = (_single_input(p) for p in paths)
    return h, c


def _dtype(name: str) -> type:
    if name not in DTYPES:
        raise InspectError(f"--dtype must be float32 or float64, not {name!r}")
    return DTYPES[name]


def _model_inputs(ckpt: Checkpoint, path: Path) -> list[np.ndarray]:
    from lstm_inspect.network import Network

    arrays = read_inputs(path)
    names = [name for name, _, _ in Network(ckpt).input_specs()]
    return ordered_inputs(arrays, names)


def _single_input(path: Path) -> np.ndarray:
    arrays = read_inputs(path)
    if len(arrays) != 1:
        raise InspectError(f"{path}: --layer takes one input array, this file holds {len(arrays)}")
    return next(iter(arrays.values()))


@app.command()
def forward(
    model: Path = MODEL_ARG,
    input: Path = typer.Option(..., "--input", "-i", help="X: .npy (one input), .npz (one array per model input, "
                               "in input order or by input name) or .csv (one 2-D sequence, steps × features)."),
    out: Path = typer.Option(..., "--out", "-o", help="Y: .npy (the single output) or .npz (output_0, output_1, ...)."),
    layer: Optional[str] = LAYER_OPT,
    initial_state: Optional[tuple[Path, Path]] = STATE_OPT,
    dtype: str = DTYPE_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Run the model (or one LSTM direction) in NumPy, exactly as Keras computes it; no TensorFlow.

    Writes what model.predict returns. With --layer, the direction's output as the layer returns
    it: the whole sequence (in processing order, i.e. reversed for go_backwards) when
    return_sequences, else the last output.

    Example:  lstm-inspect forward model.h5 --input x.npy --out y.npy
    """

    def action() -> int:
        ckpt = load(model)
        dt = _dtype(dtype)
        state = _initial_state(initial_state, layer)
        if layer is not None:
            outs = [ckpt.layer(layer).forward(_single_input(input), dtype=dt, initial_state=state)]
        else:
            result = ckpt.forward(_model_inputs(ckpt, input), dtype=dt)
            outs = result if isinstance(result, list) else [result]
        names = {f"output_{k}": o for k, o in enumerate(outs)}
        write_arrays(out, names, force)
        err = Console(stderr=True, highlight=False)
        for name, o in names.items():
            err.print(f"{out}: {name} {tuple(o.shape)} {o.dtype}", markup=False)
        return _done(ckpt)

    _run(action)


@app.command()
def verify(
    model: Path = MODEL_ARG,
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="X as for forward; default: a seeded random "
                                         "input of the model's shape (token ids for Embedding models)."),
    against: Optional[Path] = typer.Option(None, "--against", help="THEIRS: your reimplementation's outputs for the "
                                           "same input (.npy, or .npz output_0, ...), compared with Keras's instead."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Verify one LSTM direction alone (works on "
                                        "weights-only files too); compares its whole output sequence."),
    atol: float = typer.Option(1e-5, "--atol", help="Absolute tolerance."),
    rtol: float = typer.Option(1e-4, "--rtol", help="Relative tolerance: ok where |ours - keras| <= atol + rtol·|keras|."),
    seed: int = SEED_OPT,
    dtype: str = DTYPE_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check the engine (or your own reimplementation) against Keras itself on the same input.

    Runs the Keras that wrote the file: Keras 3 for 3.x files, tf_keras for older ones (the
    `keras` extra). The model is rebuilt from the parsed config with plain Keras layers only
    (safe mode: no Lambda, no custom objects), never loaded with Keras's own loader. Compares
    each top-level LSTM layer's output and the final outputs. Exit 0 when all match, 1 on a
    mismatch, 2 on bad input.

    Examples:  lstm-inspect verify model.h5
               lstm-inspect verify model.h5 --input x.npy --against my_port_outputs.npy
    """

    def action() -> int:
        from lstm_inspect.network import Network, default_inputs
        from lstm_inspect.verify import verify as run_verify
        from lstm_inspect.verify import verify_direction

        ckpt = load(model)
        dt = _dtype(dtype)
        theirs = None
        if against is not None:
            theirs = list(read_inputs(against).values())
        status = Console(stderr=True, highlight=False)
        if layer is not None:
            d = ckpt.layer(layer)
            if input is not None:
                x = _single_input(input)
            else:
                x = np.random.default_rng(seed).normal(size=(4, 10, d.input_dim or 1)).astype(np.float32)
            with status.status("running Keras (importing TensorFlow)..."):
                report = verify_direction(ckpt, layer, x, theirs[0] if theirs else None, against, atol, rtol, dt)
        else:
            xs = _model_inputs(ckpt, input) if input is not None else default_inputs(Network(ckpt, dt), seed)
            with status.status("running Keras (importing TensorFlow)..."):
                report = run_verify(ckpt, xs, theirs, against, atol, rtol, dt)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            render_verify(report, Console(highlight=False))
        return _done(ckpt, EXIT_OK if report.ok else EXIT_MISMATCH)

    _run(action)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], tol: float) -> str:
    """Error per time step on a log scale from tol/100 (lowest bar) to the largest error."""
    if not values:
        return ""
    lo = np.log10(max(tol / 100, 1e-12))
    hi = max(np.log10(max(max(values), 1e-12)), lo + 1)
    bars = []
    for v in values:
        level = (np.log10(max(v, 1e-12)) - lo) / (hi - lo)
        bars.append(SPARK[int(np.clip(level, 0, 0.999) * len(SPARK))])
    return "".join(bars)


def render_verify(report: Any, console: Console) -> None:
    what = f"theirs ({report.against})" if report.against else "the NumPy engine"
    console.print(f"[bold]{report.file}[/bold]: {what} vs {report.reference}   "
                  f"tolerance |Δ| ≤ {report.atol:g} + {report.rtol:g}·|keras|")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("output", "shape", "max |Δ|", "max rel", "", "first past tolerance", "|Δ| per step"):
        table.add_column(col, overflow="fold")
    for c in report.comparisons:
        first = "-" if c.first_bad is None else ", ".join(f"{k} {v}" for k, v in c.first_bad.items())
        table.add_row(c.name, "×".join(map(str, c.shape)), f"{c.max_abs:.2e}", f"{c.max_rel:.2e}",
                      "[green]✓[/green]" if c.ok else "[red]✗[/red]", first,
                      sparkline(c.per_step, report.atol) if c.per_step else "")
    console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if report.ok:
        console.print("[green]match[/green]: every output within tolerance")
    else:
        bad = [c for c in report.comparisons if not c.ok]
        first = bad[0]
        growth = ""
        if first.per_step and len(first.per_step) > 1:
            ps = first.per_step
            growth = (" The error is there from step 0 (look at what every step shares: kernel, bias, gate order, activations)."
                      if ps[0] > report.atol else
                      " The error starts later and grows over time (look at the recurrence: recurrent_kernel, "
                      "state carry, masking).")
        console.print(f"[red]mismatch[/red]: {len(bad)} of {len(report.comparisons)} outputs differ; first: "
                      f"{first.name}.{growth}")


@app.command()
def trace(
    model: Path = MODEL_ARG,
    input: Path = typer.Option(..., "--input", "-i", help="X as for forward."),
    out: Path = typer.Option(..., "--out", "-o", help="T.npz, or a folder for --format csv."),
    fmt: Optional[str] = typer.Option(None, "--format", help="npz (default for a .npz path) or csv (a folder)."),
    layer: Optional[str] = LAYER_OPT,
    initial_state: Optional[tuple[Path, Path]] = STATE_OPT,
    dtype: str = DTYPE_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Golden values for porters: every LSTM direction's z, i, f, c̃, o, c, h at every time step.

    Shapes (batch, steps, units) (z: 4·units, gates i, f, c, o), in processing order: for a
    go_backwards direction, step k consumed input step steps-1-k. h and c are the values the
    cell computed at that step (at a masked step Keras computes them but carries the old state).

    Example:  lstm-inspect trace model.h5 --input x.npy --out trace.npz
    """

    def action() -> int:
        from lstm_inspect.network import Network, RunRecord, run_direction

        ckpt = load(model)
        dt = _dtype(dtype)
        kind = fmt or ("npz" if out.suffix.lower() == ".npz" else "csv")
        if kind not in ("npz", "csv"):
            raise InspectError(f"--format must be npz or csv, not {kind!r}")
        state = _initial_state(initial_state, layer)
        if layer is not None:
            d = ckpt.layer(layer)
            x = _single_input(input)
            d.check_input(x, state)
            res = run_direction(d, x, initial_state=state, dtype=dt, trace=True)
            traces = {d.name: res.trace}
        else:
            rec = RunRecord()
            Network(ckpt, dt, trace=True).run(_model_inputs(ckpt, input), rec)
            traces = rec.traces
        arrays = {name: {q: getattr(t, q) for q in TRACE_QUANTITIES} for name, t in traces.items() if t is not None}
        written = write_trace(out, arrays, kind, force)
        Console(stderr=True, highlight=False).print(f"{out}: {len(written)} arrays for {len(arrays)} LSTM "
                                                    "direction(s)", markup=False)
        return _done(ckpt)

    _run(action)


@app.command()
def stats(
    model: Path = MODEL_ARG,
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="X as for forward, for the activation "
                                         "statistics; default: a seeded random input of the model's shape."),
    seed: int = SEED_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print every figure as JSON."),
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
        from lstm_inspect.stats import collect

        ckpt = load(model)
        xs = _model_inputs(ckpt, input) if input is not None else None
        report = collect(ckpt, xs, seed)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            render_stats(report, Console(highlight=False))
        return _done(ckpt)

    _run(action)


def render_stats(report: Any, console: Console) -> None:
    console.print(f"[bold]{report.file}[/bold]   activations from {report.activations_from}")
    console.print("[dim]≈0: fraction with |w| < 1e-3; σ_max: largest singular value; st.rank: stable rank "
                  "‖U‖_F² / σ_max²[/dim]")
    for st in report.directions:
        table = Table(title=f"{st.name}: weights", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("gate", "block", "shape", "mean", "std", "min", "max", "‖·‖_F", "max|w|", "≈0", "NaN/Inf",
                    "σ_max", "st.rank"):
            table.add_column(col, justify="left" if col in ("gate", "block", "shape") else "right", no_wrap=True)
        for g, blocks in st.weights.items():
            for block, b in blocks.items():
                table.add_row(g, block, "×".join(map(str, b.shape)), f"{b.mean:+.3f}", f"{b.std:.3f}", f"{b.min:+.3f}",
                              f"{b.max:+.3f}", f"{b.frobenius:.3f}", f"{b.max_abs:.3f}", f"{b.near_zero:.1%}",
                              f"{b.nan}/{b.inf}", "" if b.spectral_norm is None else f"{b.spectral_norm:.3f}",
                              "" if b.stable_rank is None else f"{b.stable_rank:.2f}")
        console.print(table)
        if st.activations:
            act = Table(title=f"{st.name}: activations over {st.steps_used} (sample, step) pairs",
                        title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
            for col in ("gate", "mean", "std", "left-saturated", "right-saturated"):
                act.add_column(col, justify="left" if col == "gate" else "right")
            for g, a in st.activations.items():
                act.add_row("c̃" if g == "c" else g, f"{a.mean:+.3f}", f"{a.std:.3f}", f"{a.left_saturated:.1%}",
                            f"{a.right_saturated:.1%}")
            console.print(act)
            dead = ", ".join(map(str, st.dead_units)) if st.dead_units else "none"
            console.print(f"c in [{st.c_range[0]:+.3f}, {st.c_range[1]:+.3f}]   h in [{st.h_range[0]:+.3f}, "
                          f"{st.h_range[1]:+.3f}]   units whose h never changes: {dead}")
        for note in st.notes:
            console.print(f"[yellow]note:[/yellow] {note}")
        console.print()


@app.command()
def dump(
    model: Path = MODEL_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="A folder to create (replaced only with --force)."),
    fmt: str = typer.Option("csv", "--format", help="csv, npz or json."),
    layout: str = typer.Option("gates", "--layout", help="gates (W_g and b_g per gate), keras (kernel, "
                               "recurrent_kernel, bias), pytorch (nn.LSTM state_dict) or onnx (W, R, B)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Only this LSTM direction (a name from `show`)."),
    force: bool = FORCE_OPT,
) -> None:
    """Write the gate matrices to files, in the layout your port needs, with a manifest.json.

    gates: DIR/<layer>/W_i.csv ... W_o.csv (N_c rows × N_i + N_c columns, header x0.., h0..) and
    b_i.csv ... b_o.csv. Values are written with 9 significant digits, which read back bit for
    bit as float32. pytorch: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 (+ _reverse),
    gates i, f, g, o. onnx: W, R, B with gates i, o, f, c. Written atomically.

    Example:  lstm-inspect dump model.h5 --out gates/ --layout pytorch --format npz
    """

    def action() -> int:
        from lstm_inspect.export import dump as write_dump

        ckpt = load(model)
        written = write_dump(ckpt, out, fmt, layout, layer, force)
        Console(stderr=True, highlight=False).print(f"{out}: {len(written)} files and manifest.json ({layout}, "
                                                    f"{fmt})", markup=False)
        return _done(ckpt)

    _run(action)


@app.command()
def plot(
    model: Path = MODEL_ARG,
    out: Path = typer.Option(..., "--out", "-o", help="A folder to create (replaced only with --force)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="X as for forward, for the activation plot; "
                                         "default: a seeded random input."),
    layer: Optional[str] = typer.Option(None, "--layer", help="Only this LSTM direction."),
    seed: int = SEED_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Draw each LSTM direction: gate heatmaps, biases, recurrent spectra, activations over time (PNG).

    Per direction, DIR/<layer>/weights.png (W_i..W_o, input and recurrent columns split by a
    line), biases.png, spectrum.png (singular values of each U_g) and activations.png (one
    sample: the mean and a few units of each gate, c and h over time). Needs matplotlib.

    Example:  lstm-inspect plot model.h5 --out plots/
    """

    def action() -> int:
        from lstm_inspect.plots import plot as draw

        ckpt = load(model)
        xs = _model_inputs(ckpt, input) if input is not None else None
        with Console(stderr=True).status("drawing..."):
            written, source = draw(ckpt, out, xs, seed, force, layer)
        Console(stderr=True, highlight=False).print(f"{out}: {len(written)} PNGs (activations from {source})",
                                                    markup=False)
        return _done(ckpt)

    _run(action)


@app.command()
def diagnose(
    model: Path = MODEL_ARG,
    input: Path = typer.Option(..., "--input", "-i", help="X, the input you gave your reimplementation."),
    against: Path = typer.Option(..., "--against", help="THEIRS: its outputs (.npy, or .npz output_0, ...)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="THEIRS is one LSTM direction's output sequence "
                                        "for an input (batch, steps, N_i)."),
    atol: float = typer.Option(1e-5, "--atol"),
    rtol: float = typer.Option(1e-4, "--rtol"),
    as_json: bool = typer.Option(False, "--json", help="Print the diagnosis as JSON."),
) -> None:
    """Tell why your LSTM does not match Keras: which common porting mistake reproduces your outputs.

    Re-runs the engine (which reproduces Keras) under each mistake: all 23 wrong gate orders,
    the other hard_sigmoid or sigmoid, a dropped bias or CuDNN bias half, transposed or swapped
    blocks, time reversed, masks mishandled, tanh left off c, reduced precision. Exit 0 when
    THEIRS already matches, 1 on a mismatch (diagnosed or not), 2 on bad input.

    Example:  lstm-inspect diagnose model.h5 --input x.npy --against my_port.npy
    """

    def action() -> int:
        from lstm_inspect.diagnose import diagnose as run_diagnose

        ckpt = load(model)
        theirs = list(read_inputs(against).values())
        xs = [_single_input(input)] if layer is not None else _model_inputs(ckpt, input)
        with Console(stderr=True).status("trying the common porting mistakes..."):
            result = run_diagnose(ckpt, xs, theirs, layer, atol, rtol)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            render_diagnosis(result, Console(highlight=False))
        return _done(ckpt, EXIT_OK if result.matches else EXIT_MISMATCH)

    _run(action)


def render_diagnosis(result: Any, console: Console) -> None:
    if result.matches:
        console.print(f"[green]match[/green]: THEIRS equals what Keras computes for {result.file} "
                      f"(max |Δ| {max(c.max_abs for c in result.baseline):.2e})")
        return
    worst = max(c.max_abs for c in result.baseline)
    console.print(f"[red]mismatch[/red]: THEIRS differs from what Keras computes for {result.file} by up to {worst:.3g}")
    found = result.found
    if found:
        for rank, h in enumerate(found, 1):
            console.print(f"{rank}. [bold]{h.name}[/bold] reproduces THEIRS (max |Δ| {h.max_abs:.2e}).\n   fix: {h.fix}")
    else:
        console.print("none of the common mistakes reproduces THEIRS; the closest:")
        for h in result.ranked[:3]:
            console.print(f"   {h.name} (max |Δ| {h.max_abs:.3g})")
    console.print(result.divergence)


def _num(n: Optional[int]) -> str:
    return "?" if n is None else str(n)


def entry() -> Any:
    """Console-script entry point."""
    return app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
