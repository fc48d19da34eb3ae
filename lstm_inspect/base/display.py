"""How the library's objects show themselves in Python: a one-line repr and a small HTML table for notebooks.

Names come from files, so both escape them: `brief` shortens a name and makes control characters visible
(a repr stays one line of bounded length), `html_table` passes every cell through `html.escape` (a layer named
`<script>` is shown, never run, by Jupyter's HTML display).
"""

from __future__ import annotations

import html
from collections.abc import Iterable

BRIEF_CHARS = 60  # a name in a repr: at most this many characters, the middle cut


def brief(text: object, limit: int = BRIEF_CHARS) -> str:
    """A name as a repr shows it: one line, at most `limit` characters, non-printable characters escaped."""
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    if len(s) > limit:
        keep = (limit - 1) // 2
        s = s[:keep] + "…" + s[len(s) - (limit - 1 - keep):]
    return s


def html_table(title: str, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A small HTML table (`_repr_html_`): a caption, a header row and one row per item, every text escaped."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(brief(v, 200))}</td>" for v in row) + "</tr>" for row in rows)
    return (f"<table><caption style=\"text-align:left\"><b>{esc(brief(title, 200))}</b></caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
