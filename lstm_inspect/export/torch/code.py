"""The writer of the PyTorch export's model.py: names, literals, helper functions, Keras's activations.

Why it exists: every PyTorch emitter (the family modules, `ops`, `cells`) writes Python source,
and a Keras file is hostile, so everything that goes from the file into that source passes through
here: a layer name becomes an identifier only through `Names.fresh` ([0-9A-Za-z_], never a keyword,
never one of nn.Module's own attributes, de-duplicated), a number only through `number`/`integer`
(checked with float()/int() and finiteness), an activation only by lookup in `ACTIVATIONS`, and
arrays go to weights.safetensors, never into the code. Comments and docstrings carry only
identifiers made here and names from lstm-inspect's own tables.

Keras's activations follow `lstm_inspect.model.activations` (`keras/src/activations/activations.py`,
`tf_keras/src/activations.py`): hard_sigmoid is clip(0.2·x + 0.5, 0, 1) in Keras 1/2 and tf.keras,
clip(x/6 + 0.5, 0, 1) in Keras 3; the generation is the writing Keras's.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lstm_inspect.base.errors import InspectError
from lstm_inspect.engine.layers.registry import Context, LayerCall
from lstm_inspect.io.arrays import printable
from lstm_inspect.model.cells.base import activation_name

if TYPE_CHECKING:
    from lstm_inspect.model.architecture import Call, LayerNode
    from lstm_inspect.model.checkpoint import Checkpoint


@dataclass
class Sym:
    """A tensor of the generated forward(), as the emitters see it (the engine's `Tensor` in PyTorch)."""

    name: str  # a local variable of forward() (or an expression made only of them)
    kind: str = "float"  # "float", "int" (token ids, int64), "bool", "complex"
    mask: str | None = None  # Keras's propagated mask: a local holding a bool (batch, steps) tensor
    shape: tuple[int, ...] | None = None  # the shape this tensor had in the engine's run on a made-up input

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


def is_sym(obj: Any) -> bool:
    return isinstance(obj, Sym)


def kind_of(dtype: Any) -> str:
    return {"b": "bool", "i": "int", "u": "int", "c": "complex"}.get(np.dtype(dtype).kind, "float")


# nn.Module's own attribute names (torch 2.x): a layer named like one gets a suffix, or it would
# replace the method (forward, eval, to...) or be refused by add_module.
MODULE_ATTRIBUTES = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia", "named_buffers",
    "named_children", "named_modules", "named_parameters", "parameters", "register_backward_hook",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad",
})
MODULE_GLOBALS = frozenset({"torch", "nn", "F", "Model", "INPUT_DTYPES", "List", "Optional", "Tuple", "Tensor",
                            "keras_activation", "annotations", "self",
                            "model", "load_file", "y", "outputs", "example", "scripted", "traced", "dynamic",
                            "exported", "compiled"})  # from "model": the README's lines
MAX_NAME = 40


def identifier(hint: str) -> str:
    """A Python identifier made from a name out of the file: ASCII letters, digits and _, nothing else."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", str(hint))[:MAX_NAME].lstrip("_") or "layer"
    if base[0].isdigit():
        base = f"layer_{base}"
    return base


class Names:
    """Unique identifiers in one namespace; `reserved` are never handed out."""

    def __init__(self, reserved: frozenset[str] | set[str]) -> None:
        self.reserved = frozenset(reserved)
        self.used: set[str] = set(reserved)

    def fresh(self, hint: str) -> str:
        base = identifier(hint)
        if keyword.iskeyword(base) or base in self.reserved:
            base = f"{base}_"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def number(value: Any, what: str) -> str:
    """A finite real number from a config, as a Python literal (checked, never copied as text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InspectError(f"{what} is {value!r}, not a number")
    v = float(value)
    if not math.isfinite(v):
        raise InspectError(f"{what} is {value!r}, not a finite number")
    return repr(v)


def integer(value: Any, what: str) -> str:
    """A whole number from a config, as a Python literal."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or abs(int(value)) >= 1 << 62:
        raise InspectError(f"{what} is {value!r}, not an integer")
    return str(int(value))


def scalar(value: Any, what: str) -> str:
    """A bool, integer or finite float constant as a literal."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return integer(value, what)
    return number(value, what)


def quoted(text: str) -> str:
    """Text for a docstring: printable, repr()'d, and with every double quote escaped, so it cannot end the
    docstring whatever it holds."""
    return repr(printable(text)).replace('"', '\\"')


TORCH_DTYPES = {"bool": "torch.bool", "float16": "torch.float16", "float32": "torch.float32",
                "float64": "torch.float64", "int8": "torch.int8", "int16": "torch.int16", "int32": "torch.int32",
                "int64": "torch.int64", "uint8": "torch.uint8", "complex64": "torch.complex64",
                "complex128": "torch.complex128"}


def torch_dtype(np_type: Any) -> str:
    return TORCH_DTYPES[np.dtype(np_type).name]


# ---------------------------------------------------------------- helper functions written into model.py


# the typing model.py's annotated helpers use (TorchScript reads the annotations)
TYPING = ("from typing import List, Optional, Tuple", "from torch import Tensor")


@dataclass(frozen=True)
class Snippet:
    code: str
    needs: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


SNIPPETS: dict[str, Snippet] = {}


def snippet(name: str, code: str, needs: tuple[str, ...] = (), imports: tuple[str, ...] = (),
            before: str | None = None) -> None:
    """A helper model.py may need (a function or class named `name`), in the order they are registered, or
    just before the helper `before` registered earlier (a cell kind's step function and explicit cell class
    go among the shared recurrent helpers: before `KerasCell` and `TorchDirection`)."""
    if name in SNIPPETS:  # a second helper of one name would silently replace the first in every model.py
        raise ValueError(f"snippet {name!r} is registered twice")
    entry = Snippet(code.strip("\n"), needs, imports)
    if before is None:
        SNIPPETS[name] = entry
        return
    items = list(SNIPPETS.items())
    at = [n for n, _ in items].index(before)
    items.insert(at, (name, entry))
    SNIPPETS.clear()
    SNIPPETS.update(items)


def _hard_sigmoid(generation: str) -> str:
    if generation == "keras3":
        return ('def hard_sigmoid(x):\n    """Keras 3\'s hard_sigmoid: relu6(x + 3) / 6 = clip(x/6 + 0.5, 0, 1)."""\n'
                "    return torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)")
    return ('def hard_sigmoid(x):\n    """Keras 1/2\'s (and tf.keras\'s) hard_sigmoid: clip(0.2·x + 0.5, 0, 1)."""\n'
            "    return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)")


snippet("linear", '''
def linear(x):
    """Keras's linear activation."""
    return x
''')
snippet("softmax_last", '''
def softmax_last(x):
    """Keras's softmax activation (over the last axis)."""
    return torch.softmax(x, dim=-1)
''')
snippet("leaky_relu_02", '''
def leaky_relu_02(x):
    """Keras's leaky_relu activation (slope 0.2; the LeakyReLU layer's default is 0.3)."""
    return F.leaky_relu(x, 0.2)
''')
snippet("hard_silu", '''
def hard_silu(x):
    """Keras's hard_silu (hard_swish): x · hard_sigmoid(x)."""
    return x * hard_sigmoid(x)
''', needs=("hard_sigmoid",))

# Keras activation -> (a callable in model.py, the helper it needs)
ACTIVATIONS: dict[str, tuple[str, str | None]] = {
    "linear": ("linear", "linear"), "tanh": ("torch.tanh", None), "sigmoid": ("torch.sigmoid", None),
    "relu": ("torch.relu", None), "relu6": ("F.relu6", None), "elu": ("F.elu", None), "selu": ("torch.selu", None),
    "softsign": ("F.softsign", None), "softplus": ("F.softplus", None), "swish": ("F.silu", None),
    "silu": ("F.silu", None), "exponential": ("torch.exp", None), "softmax": ("softmax_last", "softmax_last"),
    "gelu": ("F.gelu", None), "mish": ("F.mish", None), "log_sigmoid": ("F.logsigmoid", None),
    "leaky_relu": ("leaky_relu_02", "leaky_relu_02"), "hard_sigmoid": ("hard_sigmoid", "hard_sigmoid"),
    "hard_silu": ("hard_silu", "hard_silu"), "hard_swish": ("hard_silu", "hard_silu"),
}
HELPER_NAMES = frozenset({"hard_sigmoid"})  # completed with SNIPPETS' names when the writer starts


# ---------------------------------------------------------------- the writer


@dataclass
class Writer:
    """model.py under construction: Model.__init__'s lines, forward()'s lines, the weights, the helpers."""

    where: str  # the file, for error messages
    hard_sigmoid: str  # "keras2" or "keras3"
    init: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    helpers: list[str] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)  # a key (the node's path) -> its attribute
    act_names: list[str] = field(default_factory=list)  # Keras activations the recurrent layers name
    _attr_names: Names = field(default_factory=lambda: Names(MODULE_ATTRIBUTES))
    _locals: Names | None = None

    @property
    def locals(self) -> Names:
        if self._locals is None:
            self._locals = Names(set(dir(builtins)) | MODULE_GLOBALS | set(SNIPPETS) | HELPER_NAMES)
        return self._locals

    # ---- Model.__init__
    def module(self, key: str, hint: str, ctor: str, weights: dict[str, np.ndarray]) -> str:
        """The attribute for `key` (created once, shared by every call of the layer), its weights registered
        under the attribute's state_dict keys."""
        if key in self.attrs:
            return self.attrs[key]
        attr = self._attr_names.fresh(hint)
        self.init.append(f"self.{attr} = {ctor}")
        for name, a in weights.items():
            self.weights[f"{attr}.{name}"] = _stored(a)
        self.attrs[key] = attr
        return attr

    def buffer(self, hint: str, value: np.ndarray) -> str:
        """A constant array as a buffer of the module (its values in weights.safetensors, not in the code)."""
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise InspectError(f"{self.where}: a constant holds {a.dtype}, not numbers")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise InspectError(f"{self.where}: a constant holds NaN or Inf")
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64)
        attr = self._attr_names.fresh(hint)
        shape = ", ".join(str(int(n)) for n in a.shape)
        self.init.append(f'self.register_buffer("{attr}", torch.zeros(({shape}{"," if a.ndim == 1 else ""}), '
                         f"dtype={torch_dtype(a.dtype)}))")
        self.weights[attr] = np.ascontiguousarray(a)
        return f"self.{attr}"

    # ---- forward()
    def name(self, hint: str) -> str:
        return self.locals.fresh(hint)

    def let(self, hint: str, expr: str, kind: str = "float", mask: str | None = None, comment: str = "") -> Sym:
        """A new local holding `expr`."""
        name = self.name(hint)
        self.line(f"{name} = {expr}" + (f"  # {comment}" if comment else ""))
        return Sym(name, kind, mask)

    def line(self, text: str) -> None:
        self.body.append(text)

    def comment(self, text: str) -> None:
        self.body.append(f"# {text}")

    def need(self, *names: str) -> None:
        for name in names:
            if name in self.helpers:
                continue
            if name != "hard_sigmoid":
                for dep in SNIPPETS[name].needs:
                    self.need(dep)
            self.helpers.append(name)

    # ---- activations
    def act_fn(self, name: str, what: str) -> str:
        """Keras's activation `name` as a callable of model.py (refused when lstm-inspect does not know it)."""
        base = str(name or "linear")
        if base in ("None", ""):
            base = "linear"
        if base not in ACTIVATIONS:
            raise InspectError(f"{self.where}: {what}: the activation {base!r} has no PyTorch form in lstm-inspect "
                               "yet")
        fn, helper = ACTIVATIONS[base]
        if helper is not None:
            self.need(helper)
        return fn

    def act_name(self, name: str, what: str) -> str:
        """Keras's activation `name` as the recurrent modules of model.py name it (a string `keras_activation`
        dispatches on, so that TorchScript compiles it): the table's own key, refused when unknown."""
        base = str(name or "linear")
        if base in ("None", ""):
            base = "linear"
        self.act_fn(base, what)
        if base not in self.act_names:
            self.act_names.append(base)
        return base

    def act(self, name: str, x: str, what: str) -> str:
        """`x` through Keras's activation `name`, as an expression."""
        if str(name or "linear") in ("linear", "None", ""):
            return x
        return f"{self.act_fn(name, what)}({x})"

    # ---- assembly
    def helper_code(self) -> tuple[list[str], list[str]]:
        """(the import lines, the helpers' code) for the helpers in use, in their registered order."""
        order = [n for n in ("hard_sigmoid", *SNIPPETS) if n in self.helpers]
        imports: list[str] = []
        code: list[str] = []
        if self.act_names:
            imports += ["from torch import Tensor"]
            code.append(self._activation_dispatch())
        for n in order:
            if n == "hard_sigmoid":
                code.insert(0, _hard_sigmoid(self.hard_sigmoid))
                continue
            s = SNIPPETS[n]
            code.append(s.code)
            imports += [i for i in s.imports if i not in imports]
        return imports, code


    def _activation_dispatch(self) -> str:
        lines = ["def keras_activation(name: str, x: Tensor) -> Tensor:",
                 '    """Keras\'s activation `name` (those the recurrent layers of this model use), by name so that',
                 '    TorchScript compiles the step functions; the name is a constant of each module."""']
        for base in self.act_names:
            fn = ACTIVATIONS[base][0]
            lines += [f'    if name == "{base}":', f"        return {fn}(x)"]
        lines.append("    return x")
        return "\n".join(lines)


def _stored(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, dtype=np.float32)
    return np.ascontiguousarray(a)


@dataclass
class LayerEmit:
    """One call of one layer, for its emitter: its input tensors, its resolved call, where to write."""

    node: LayerNode
    inputs: list[Sym]  # the positional tensors, flattened
    args: Call  # the call, tensors resolved to Syms
    w: Writer
    ckpt: Checkpoint
    keras_major: int
    keras_version: str | None
    kind: str  # the registry's name of the layer kind (never the file's own text)
    key: str = ""  # the attribute key (the node's path; TimeDistributed's inner layer shares it)

    @property
    def config(self) -> dict[str, Any]:
        return self.node.config

    @property
    def x(self) -> Sym:
        if not self.inputs:
            raise self.fail("it is called on no tensor")
        return self.inputs[0]

    @property
    def hint(self) -> str:
        return self.node.path.replace("/", "_")

    @property
    def hard_sigmoid(self) -> str:
        return "keras3" if self.keras_major >= 3 else "keras2"

    @property
    def kwargs(self) -> dict[str, Any]:
        """The call's keyword arguments, tensors resolved to Syms (as `LayerCall.kwargs`)."""
        return self.args.kwargs

    @property
    def ctx(self) -> Any:
        """The writing Keras as the engine's `Context` holds it (for the shared decisions of
        `lstm_inspect.engine.layers`)."""
        return Context(np.float32, self.keras_version, self.keras_major)

    def fail(self, problem: str) -> InspectError:
        return InspectError(f"{self.w.where}: layer {self.node.path} ({self.kind}): {problem}")

    def refuse(self, detail: str, plain: str | None = None) -> InspectError:
        """A shared decision's refusal (`lstm_inspect.engine.layers.Site`): worded `plain` here, without the file's
        values, when the decision gives such a wording."""
        return self.fail(plain if plain is not None else detail)

    def unsupported(self, what: str = "") -> InspectError:
        detail = f" ({what})" if what else ""
        return self.fail(f"has no PyTorch form in lstm-inspect yet{detail}")

    def read(self, shapes: list[tuple[Any, ...]]) -> list[np.ndarray]:
        """The layer's stored arrays, checked against the shapes its config implies (None: any size)."""
        weights = self.ckpt.read_layer(self.node.path)
        call = LayerCall(self.node, [], weights, self.ctx)
        call.expect(shapes)
        return weights

    def number(self, key: str, default: Any) -> str:
        value = self.config.get(key, default)
        try:
            return number(value, key)
        except InspectError as exc:
            raise self.fail(str(exc)) from None

    def activation(self, key: str = "activation", default: str = "linear") -> str:
        return activation_name(self.config.get(key), default)
