"""Output helpers shared by the commands: JSON or rich tables on stdout, progress and warnings on stderr.

Example:
    >>> with progress() as say:   # doctest: +SKIP
    ...     say("exporting")      # a spinner on a terminal, else the line "edgekit: exporting" on stderr
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any, Callable, Iterator

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

__all__ = ["out", "err", "emit", "progress", "warn", "table", "human_bytes", "number_range", "PIPE_WIDTH",
           "plot_axes", "save_plot"]

PIPE_WIDTH = 4096  # columns when stdout is a pipe or a file: tables keep their natural width


class _Stdout(Console):
    """A console that wraps to the terminal, but never wraps or truncates into a pipe or a file
    (rich would use $COLUMNS or 80 columns there, and cut names in tables that scripts read)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


out = _Stdout(soft_wrap=True)
err = Console(stderr=True)


def emit(data: Any, as_json: bool, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON (machine-readable) or call ``render`` for the human view."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render()


@contextlib.contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Report progress on stderr: a spinner on a terminal (unless ``enabled`` is False, e.g. under
    ``--json``); into a pipe or a file, one plain line ``edgekit: <message>`` per new message, so piped
    runs and CI logs show where a command is (stdout keeps only the result, JSON included). An in-process
    stand-in for stderr (a StringIO: no file descriptor) gets neither."""
    if err.is_terminal:
        if not enabled:
            yield lambda message: None
            return
        with err.status("starting") as status:
            yield lambda message: status.update(message)
        return
    if not _is_pipe_or_file(sys.stderr):
        yield lambda message: None
        return
    last: list[str] = []

    def say(message: str) -> None:
        if last != [message]:
            last[:] = [message]
            _stderr_line(f"edgekit: {message}")

    yield say


def _is_pipe_or_file(stream: Any) -> bool:
    """Whether ``stream`` writes to an OS pipe or file (a file descriptor that is not a terminal)."""
    try:
        return not os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


def warn(message: str) -> None:
    """Print ``warning: <message>`` as one line on stderr."""
    _stderr_line(f"warning: {message}")


def _stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table whose title and cells are data, never markup (``[batch, 3]`` stays visible)."""
    grid = Table(title=None if title is None else escape(title), title_justify="left")
    for column in columns:
        grid.add_column(escape(column), overflow="fold")  # a narrow terminal wraps long names, never cuts them
    for row in rows:
        grid.add_row(*[escape(str(cell)) for cell in row])
    return grid


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def number_range(low: float | None = None, high: float | None = None, *, above: bool = False) -> Callable[..., Any]:
    """A typer option callback: the value (when given) is a finite number >= ``low`` (> with ``above``)
    and <= ``high``; else a usage error naming the option (exit 2; a JSON object under --json).

    Example:
        >>> import click
        >>> check = number_range(0, 1)
        >>> check(click.Option(["--max-accuracy-drop"]), 0.5)
        0.5
        >>> try:
        ...     check(click.Option(["--max-accuracy-drop"]), float("inf"))
        ... except Exception as exc:  # typer's BadParameter
        ...     print(exc)
        expected a finite number in [0, 1], got inf
    """
    import math

    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    elif low is not None:
        wanted = f"{'>' if above else '>='} {low:g}"
    else:
        wanted = f"<= {high:g}"

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        ok = math.isfinite(value) and (low is None or (value > low if above else value >= low)) and (high is None or value <= high)
        if not ok:
            raise typer.BadParameter(f"expected a finite number {wanted}, got {value:g}", param=param)
        return value

    return check


def plot_axes() -> tuple[Any, Any]:
    """A (figure, axes) pair for a front plot on matplotlib's file backend (the ``[plot]`` extra)."""
    from edgekit.runtimes.errors import require

    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def save_plot(figure: Any, axes: Any, path: Any) -> None:
    """The legend, then ``figure`` written to ``path`` as PNG atomically (a temporary file beside it, renamed)."""
    from pathlib import Path

    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    tmp.replace(path)
