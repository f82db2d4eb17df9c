"""Output helpers shared by the commands: JSON or rich tables on stdout, progress on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.table import Table

__all__ = ["out", "err", "emit", "progress", "table", "human_bytes"]

out = Console(soft_wrap=True)
err = Console(stderr=True)


def emit(data: Any, as_json: bool, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON (machine-readable) or call ``render`` for the human view."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render()


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr whose message the callback updates; silent when stderr is not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda message: None
        return
    with err.status("starting") as status:
        yield lambda message: status.update(message)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*[str(cell) for cell in row])
    return grid


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
