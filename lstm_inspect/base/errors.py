"""The one exception that means "the user's input is wrong"."""

from __future__ import annotations


class InspectError(Exception):
    """Bad input: a checkpoint we cannot read, a shape that does not fit, a wrong argument.

    The message is one sentence for a person, naming the file and what is wrong;
    the CLI prints it without a traceback and exits with code 2.
    """
