"""``edgekit store export|import|list|path``: the latency store of measured results."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, table

__all__ = ["app", "register"]

app = typer.Typer(help="Export, import and list measured latencies (the latency store).", no_args_is_help=True)

_STORE_HELP = "Latency store file (default: $EDGEKIT_CACHE_DIR or the user cache)."


def _open(store_path: Optional[Path]):
    from edgekit.targets.store import LatencyStore

    return LatencyStore(store_path)


@app.command("export")
def export_command(
    file: Path = typer.Argument(..., help="JSON file to write."),
    store_path: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Write every stored measurement to a JSON file (atomically)."""
    with _open(store_path) as store:
        count = store.export_json(file)
        out.print(f"exported {count} record(s) from {store.path} to {file}")


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="JSON file written by 'edgekit store export'."),
    store_path: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
) -> None:
    """Add the measurements of an export file (all or nothing; same keys are replaced)."""
    with _open(store_path) as store:
        count = store.import_json(file)
        out.print(f"imported {count} record(s) from {file} into {store.path}")


@app.command("list")
def list_command(
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Only this target's records."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only model, block or node records."),
    store_path: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List stored measurements."""
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.store import RECORD_KINDS

    if kind is not None and kind not in RECORD_KINDS:
        raise UsageError(f"--kind {kind!r}: expected one of {', '.join(RECORD_KINDS)}")
    with _open(store_path) as store:
        records = store.records(target=target, kind=kind)
        where = store.path
    rows = [[r.target, r.kind, r.key[:12], f"{r.runtime} {r.runtime_version}", r.precision, r.threads,
             f"{r.p50_ms:.3f}", f"{r.p90_ms:.3f}", r.runs, r.measured_at[:10]] for r in records]
    emit([r.to_json() for r in records], as_json,
         lambda: out.print(table(f"{len(records)} measurement(s) in {where}",
                                 ["target", "kind", "key", "runtime", "prec.", "thr.", "p50 ms", "p90 ms", "runs", "date"],
                                 rows)))


@app.command("path")
def path_command(store_path: Optional[Path] = typer.Option(None, "--store", help=_STORE_HELP)) -> None:
    """Print where the store lives (without opening it)."""
    from edgekit.targets.store import default_store_path

    typer.echo(str(store_path if store_path is not None else default_store_path()))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="store")
