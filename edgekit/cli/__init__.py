"""The ``edgekit`` command line.

Exit codes: 0 ok, 1 failure, 2 usage. A user error prints one line; ``--debug`` (anywhere on the
command line) shows the traceback instead.

Example:
    >>> main(["targets", "show", "no-such-target"])  # doctest: +SKIP
    error: unknown target 'no-such-target' ...
    1
"""

from __future__ import annotations

import json
import sys
import traceback

import typer

from edgekit.runtimes.errors import EdgekitError, UsageError

from . import agent, bench, calibrate, compress, export, formats, generate, inspect, lut, ofa, profile, run, select, store
from . import eval as eval_cmd
from . import targets
from . import truth

__all__ = ["app", "main"]

app = typer.Typer(
    name="edgekit",
    help="Export, select and run models on edge devices within a latency budget.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (export, compress, eval_cmd, select, run, inspect, bench, profile, calibrate, lut, agent, store, generate, ofa, formats):
    module.register(app)
app.add_typer(targets.app, name="targets")
truth.register(app)


def _version_callback(value: bool) -> None:
    if value:
        import edgekit

        typer.echo(f"edgekit {edgekit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version."),
) -> None:
    """Export, select and run models on edge devices within a latency budget (add --debug for tracebacks)."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv) and return the exit code.

    With ``--json`` on the command line an error is a JSON object on stdout,
    ``{"error": {"type": "UsageError", "message": "..."}}``, with the same exit code.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    as_json = "--json" in args
    args = [a for a in args if a != "--debug"]
    try:
        # standalone mode: typer prints usage errors itself and exits 2; our errors propagate. Under
        # --json, usage errors propagate too, to be reported as JSON.
        result = app(args=args, prog_name="edgekit", standalone_mode=not as_json)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = _fail("Interrupted", "interrupted: nothing was written", 130, as_json, prefix="")
    except typer.TyperException as exc:  # click's usage errors: raised only under --json (non-standalone mode)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        code = _fail("UsageError", message, getattr(exc, "exit_code", 2), as_json)
    except typer.Abort:
        code = _fail("Aborted", "aborted", 1, as_json)
    except EdgekitError as exc:
        if debug:
            traceback.print_exc()
        code = _fail(type(exc).__name__, str(exc), 2 if isinstance(exc, UsageError) else 1, as_json)
    except Exception as exc:  # a bug in edgekit or a dependency: still one line unless --debug
        if debug:
            traceback.print_exc()
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        code = _fail(type(exc).__name__, f"internal {type(exc).__name__}: {message} (rerun with --debug for the traceback)",
                     1, as_json)
    if argv is None:
        sys.exit(code)
    return code


def _fail(kind: str, message: str, code: int, as_json: bool, prefix: str = "error: ") -> int:
    """Report an error: a JSON object on stdout under ``--json``, else one line on stderr; returns ``code``."""
    one_line = " ".join(message.split())
    if as_json:
        sys.stdout.write(json.dumps({"error": {"type": kind, "message": one_line}}) + "\n")
        sys.stdout.flush()
    else:
        print(f"{prefix}{message}", file=sys.stderr)
    return code
