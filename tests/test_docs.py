"""The README documents every command and every option, as the CLI defines them (sqlite-utils' docs test).

Each command has a section headed ``## `lstm-inspect COMMAND ...` ``, and every long option of the
command appears in that section; the two setup commands open the README.
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


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
