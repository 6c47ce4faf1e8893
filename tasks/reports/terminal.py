"""What the terminal shows: tables drawn with rich, wrapped to the terminal's width."""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from tasks.model import Check

_STATUS = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def _console(width: int | None) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    width = max(60, width or shutil.get_terminal_size((120, 24)).columns)
    return Console(file=buf, width=width, no_color=True, highlight=False, soft_wrap=False), buf


def checks_table_text(checks: Sequence[Check], width: int | None = None) -> str:
    """CHECK / STATUS / DETAIL / FIX fitted to ``width`` columns (default: the terminal's, at least 60);
    DETAIL and FIX wrap at word boundaries, with no blank lines between rows."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold", expand=False)
    table.add_column("CHECK", no_wrap=True, max_width=32)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("DETAIL", overflow="fold", ratio=3)
    table.add_column("FIX", overflow="fold", ratio=2)
    for c in checks:
        table.add_row(c.name, _STATUS.get(c.status, c.status.upper()), c.detail, c.fix or "-")
    console, buf = _console(width)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def table_text(header: Sequence[str], rows: Sequence[Sequence[object]], width: int | None = None) -> str:
    """A plain aligned table (numbers right-aligned) for summaries such as the demo's and ``runs``: one
    line per row (it is read, grepped and pasted; a wide table scrolls rather than wraps)."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for i, name in enumerate(header):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) for r in rows)
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for r in rows:
        table.add_row(*(str(x) for x in r))
    console, buf = _console(width or 10_000)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"
