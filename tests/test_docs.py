"""The README documents every command and every option, as the CLI defines them (sqlite-utils' docs test).

Each command has a section headed ``## `lstm-inspect COMMAND ...` ``, and every long option of the
command appears in that section; `make demo` and the venv's activation open the README. That every command
block runs is tests/test_readme_blocks.py's.
"""

from __future__ import annotations

import re

import pytest
import typer.main

from lstm_inspect.cli import app

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, object]:
    """The CLI's commands as Typer builds them (its own click: options are the params with `opts`)."""
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _section(name: str) -> str:
    """The README's section of one command: from its heading to the next level-2 heading."""
    match = re.search(rf"^## `lstm-inspect {name}\b.*?$(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README.md has no section headed ## `lstm-inspect {name} ...`"
    return match.group(0)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_and_option_is_documented(name: str) -> None:
    section = _section(name)
    command = _commands()[name]
    for param in command.params:  # type: ignore[attr-defined]
        if type(param).__name__ != "TyperOption" or getattr(param, "hidden", False):
            continue
        longs = [o for o in param.opts if o.startswith("--") and o != "--help"]
        if longs:
            assert any(o in section for o in longs), f"{name}: {longs[0]} is not in its README section"


def test_readme_starts_with_make_demo_and_the_venv_on_path() -> None:
    """The first block is what a newcomer pastes: `make demo`, then the venv's bin on PATH (without it, the next
    example's `lstm-inspect` is `command not found`); `make test` is in a block of its own further down."""
    first_block = README.split("```")[1]
    assert first_block.startswith("sh\n") and "make demo" in first_block and ". .venv/bin/activate" in first_block
    assert re.search(r"^```sh\nmake test\b", README, re.M)


def test_make_demo_installs_the_core_alone() -> None:
    """`make demo` runs `show`, whose pitch is "without TensorFlow": it installs the package with no extra, and the
    core dependencies hold no TensorFlow or Keras (a fresh `make demo` here: 16 s, a 138 MB venv)."""
    import tomllib

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = re.search(r"^demo: (.+)$", makefile, re.M)
    assert demo is not None and demo.group(1).strip() == "$(VENV)/.installed-core"
    core = re.search(r"^\$\(VENV\)/\.installed-core: .*\n\t(.+)\n", makefile, re.M)
    assert core is not None and core.group(1).strip() == "$(BIN)/python -m pip install --quiet -e ."
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert not [d for d in deps if re.match(r"(tensorflow|keras|tf-keras|torch|onnx)", d)]
