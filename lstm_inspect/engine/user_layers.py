"""The user's own layers: NumPy functions the user gives for the custom classes and Lambda layers a file names.

lstm-inspect never runs code from a model file: a custom class's `call` lives in the user's code, not in the file,
and a Lambda's stored bytecode is never unmarshalled. What the user knows their layer computes, they give as a NumPy
function: `register_layer(name, fn)` from Python, or a module of theirs (`--layers my_layers.py`, `load_layers`)
defining `LAYERS = {name: fn}`. That module is the user's own code, imported by its path at their request; it is
not from the checkpoint. The file's config only *selects* among the registered functions, by a plain dictionary
lookup of the class name it writes (or, for a Lambda, the layer's name): a hostile class name (`__import__`,
`os.system`) selects nothing but what the user registered, and without a registration the layer is refused in one
line naming it.

Each function is called as `fn(config, weights, inputs, masks)`: the layer's settings as the file stores them (a
copy), its stored weights by name in Keras's order (tf_keras and SavedModels store the names given to
`add_weight`; Keras 3 numbers them 0, 1, ...), the arrays the layer is called on (a list, in call order) and their
Keras masks (None where none). It returns the layer's output, an array or a list of arrays (its outputs carry no
mask, as a Keras layer without `supports_masking`). A module may also define `keras_classes(keras)`, returning the
same layers as Keras classes for `verify` against Keras (`check.keras_ref` calls it with the Keras it runs, after
the rest of the model is rebuilt from its vetted config).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import LAYERS

if TYPE_CHECKING:
    from lstm_inspect.engine.layers.registry import Context, Tensor
    from lstm_inspect.model.architecture import LayerNode, ModelGraph

UserFn = Callable[[dict[str, Any], dict[str, np.ndarray], list[np.ndarray], list[Any]], Any]
LAMBDA_CLASSES = frozenset({"Lambda"})
MAX_NAME = 200  # a registered name longer than this is no class or layer name Keras writes


@dataclass(frozen=True)
class UserLayer:
    """One registered function: the name it answers to, the function, where it came from (a module's path, or
    `register_layer`)."""

    name: str
    fn: UserFn
    origin: str

    @property
    def label(self) -> str:
        return f"{getattr(self.fn, '__name__', 'your function')} ({self.origin})"


USER_LAYERS: dict[str, UserLayer] = {}
# Where the Keras forms come from: (module path, its keras_classes function), in the order they were loaded.
KERAS_SOURCES: list[tuple[str, Callable[[Any], Any]]] = []


def register_layer(name: str, fn: UserFn, origin: str = "register_layer") -> None:
    """Run `fn` for the layers of class `name` (as the file names it; `package>Name` also answers to `Name`), or
    for the Lambda layer named `name`. A later registration of the same name replaces an earlier one."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise InspectError(f"{origin}: a layer is registered under {str(name)[:60]!r}, not a class or layer name")
    if not callable(fn):
        raise InspectError(f"{origin}: the layer {name!r} is registered to {type(fn).__name__}, not a function")
    USER_LAYERS[name] = UserLayer(name, fn, origin)


def forget_layers() -> None:
    """Drop every registered function and Keras form (the state of a fresh process)."""
    USER_LAYERS.clear()
    KERAS_SOURCES.clear()


def load_layers(path: str | Path) -> list[str]:
    """Import the user's module at `path` (their own code, run as such) and register its `LAYERS`; remember its
    `keras_classes` for verify. Returns the names registered."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise InspectError(f"{path}: --layers takes your Python module (a .py file defining LAYERS), and there is "
                           "no such file")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    name = f"lstm_inspect_user_layers_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InspectError(f"{path}: Python cannot import this file as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickling look their module up there
    try:
        spec.loader.exec_module(module)
    except MemoryError:
        raise
    except Exception as exc:  # the user's own code: whatever it raises is theirs to fix
        sys.modules.pop(name, None)
        raise InspectError(f"{path}: your module raised {type(exc).__name__} when imported: "
                           f"{_first_line(exc)}") from exc
    layers = getattr(module, "LAYERS", None)
    if not isinstance(layers, dict):
        raise InspectError(f"{path}: defines no LAYERS dict ({{class or Lambda layer name: function}}), so it gives "
                           "lstm-inspect no layer")
    for key, fn in layers.items():
        register_layer(key, fn, origin=str(path))
    keras_classes = getattr(module, "keras_classes", None)
    if callable(keras_classes):
        KERAS_SOURCES.append((str(path), keras_classes))
    return [str(k) for k in layers]


def names_of(node: LayerNode) -> tuple[str, ...]:
    """The names a layer answers to, most precise first: a Lambda's path and name; a class's name as written,
    its registered name (Keras 3's `registered_name`, SavedModel's `package>Name`) and their last parts."""
    if node.class_name in LAMBDA_CLASSES:
        return tuple(dict.fromkeys((node.path, node.name)))
    names = [node.class_name]
    registered = node.entry.get("registered_name") if isinstance(node.entry, dict) else None
    if isinstance(registered, str):
        names.append(registered)
    names += [n.rsplit(">", 1)[-1] for n in names if ">" in n]
    return tuple(dict.fromkeys(names))


def user_layer(node: LayerNode) -> UserLayer | None:
    """The function the user registered for this layer, if any: a lookup in USER_LAYERS and nothing else."""
    for name in names_of(node):
        found = USER_LAYERS.get(name)
        if found is not None:
            return found
    return None


def users_class(node: LayerNode) -> bool:
    """Whether the file itself says the layer's class is the user's, not Keras's: Keras 3 records the module a class
    comes from (`keras.layers`, `keras.src...` for its own). A user class that shadows a Keras name (`Attention`)
    is then never run as Keras's layer of that name. (tf_keras's .h5 records no module: there the user's --layers
    registration of the name is what takes precedence.)"""
    module = node.entry.get("module") if isinstance(node.entry, dict) else None
    return isinstance(module, str) and not (module == "keras" or module.startswith("keras."))


def engine_runs(node: LayerNode) -> bool:
    """Whether the engine runs this (non-recurrent, non-op) layer: the user's function for it, else Keras's own
    layer of that class when the file does not say the class is the user's."""
    return user_layer(node) is not None or (node.class_name in LAYERS and not users_class(node))


def refusal(node: LayerNode) -> str:
    """Why the engine does not run a layer that neither it nor the user knows, and what to do."""
    what = ("holds code (a Lambda), which lstm-inspect never runs" if node.class_name in LAMBDA_CLASSES
            else "is not one the NumPy engine runs")
    name = node.name if node.class_name in LAMBDA_CLASSES else node.class_name.rsplit(">", 1)[-1]
    return (f"layer {node.path} ({node.class_name}) {what}; give your NumPy form of it with --layers my_layers.py "
            f"(LAYERS = {{{name!r}: fn}}, README 'Your own layers'), or run its recurrent layers alone with --layer")


def run_user_layer(found: UserLayer, node: LayerNode, inputs: list[Tensor], weights: dict[str, np.ndarray],
                   ctx: Context) -> list[np.ndarray]:
    """The user's function on one call: its outputs as arrays (floats in the engine's dtype)."""
    where = f"layer {node.path} ({node.class_name})"
    arrays = [np.asarray(t.value) for t in inputs]
    masks = [None if t.mask is None else np.asarray(t.mask, bool) for t in inputs]
    try:
        out = found.fn(copy.deepcopy(node.config), dict(weights), arrays, masks)
    except MemoryError:
        raise
    except Exception as exc:  # the user's own code: whatever it raises is theirs to fix
        raise InspectError(f"{where}: your function {found.label} raised {type(exc).__name__}: "
                           f"{_first_line(exc)}") from exc
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    result = []
    for k, o in enumerate(outs):
        a = o if isinstance(o, np.ndarray) else None
        if a is None or a.dtype.kind not in "fiub" or a.ndim == 0:
            raise InspectError(f"{where}: your function {found.label} returned {type(o).__name__} as output {k}, "
                               "not a NumPy array of numbers with a batch axis")
        result.append(a.astype(ctx.dtype) if a.dtype.kind == "f" else a)
    return result


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


def unknown_layers(graph: ModelGraph | None, recurrent: set[str]) -> list[tuple[LayerNode, UserLayer | None]]:
    """The layers of a graph the engine does not know by itself (custom classes, Lambdas, Keras layers it does not
    run), each with the user's function for it or None: what `show` names. `recurrent`: the recurrent layers' paths."""
    found = []
    for node in graph.walk() if graph is not None else ():
        if node.children is not None or node.is_op or node.class_name == "InputLayer" or node.path in recurrent:
            continue
        mine = user_layer(node)
        if mine is not None or not engine_runs(node):
            found.append((node, mine))
    return found
