"""The `lstm-inspect` command: parse arguments, call the library, render. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from lstm_inspect import __version__
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
    """Turn the library's InspectError into one line on stderr and exit 2; Ctrl-C into 130."""
    try:
        code = action()
    except InspectError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"lstm-inspect: {exc}", markup=False)
        raise typer.Exit(EXIT_INPUT) from None
    except KeyboardInterrupt:
        Console(stderr=True).print("lstm-inspect: interrupted", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    raise typer.Exit(code)


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
    console.print("[dim]each gate g = i, f, c, o has W_g of N_c × (N_i + N_c) acting on \\[x; h] and a bias b_g "
                  "of N_c; ✓ its shapes check, ✗ they do not, ∅ no weights stored[/dim]")
    console.print(f"[dim]{FLAGS_LEGEND}[/dim]")
    for note in ckpt.notes:
        console.print(f"[yellow]note:[/yellow] {note}", markup=True)


def _num(n: Optional[int]) -> str:
    return "?" if n is None else str(n)


def entry() -> Any:
    """Console-script entry point."""
    return app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
