"""``edgekit formats``: the format table (edgekit.runtimes.formats) and what this machine can do with each.

Example:
    >>> from edgekit.cli import main
    >>> main(["formats"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import typer

from .common import emit, out, table

__all__ = ["register", "format_rows"]


def _version(module: str) -> str | None:
    from importlib import metadata

    for name in (module, module.replace("_", "-")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _modules(modules: tuple[str, ...]) -> dict[str, Any]:
    """Which of ``modules`` are installed here, with their versions."""
    from edgekit.runtimes.formats import missing_modules

    missing = missing_modules(modules)
    return {"installed": not missing, "missing": list(missing),
            "versions": {m: _version(m) for m in modules if m not in missing}}


def format_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per registered format: the record, and whether this machine has its runtime
    (to run the files) and its exporter's dependencies (to write them)."""
    from edgekit.runtimes.formats import formats

    rows = []
    for f in formats():
        runtime, exporter = _modules(f.runtime_modules), _modules(f.exporter_modules)
        rows.append({
            "name": f.name, "suffix": f.suffix, "runtime": f.runtime, "runtimes": list(f.runtimes),
            "precisions": list(f.precisions), "available": f.available, "status": f.status, "reason": f.reason,
            "backend": f.backend, "exporter": f.exporter,
            "runtime_here": runtime, "exporter_here": exporter,
            "can_run_here": f.backend is not None and runtime["installed"],
            "can_write_here": f.available and exporter["installed"],
        })
    return rows


def _here(row: dict[str, Any], key: str, can: str, lacks: str | None) -> str:
    """``yes``, or ``no (...)`` with every reason: edgekit's part missing, modules not installed."""
    if row[can]:
        return "yes"
    missing = row[key]["missing"]
    reasons = ([lacks] if lacks else []) + ([f"{', '.join(missing)} not installed"] if missing else [])
    return f"no ({'; '.join(reasons)})"


def formats_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the model formats: suffix, runtime, precisions edgekit writes, status, and what runs here."""
    rows = format_rows()

    def render() -> None:
        body = [[r["name"], r["suffix"], ", ".join(r["runtimes"]), ", ".join(r["precisions"]) or "-", r["status"],
                 _here(r, "exporter_here", "can_write_here", None if r["exporter"] else "no exporter yet"),
                 _here(r, "runtime_here", "can_run_here", None if r["backend"] else "no backend yet")] for r in rows]
        out.print(table("formats (edgekit.runtimes.formats)",
                        ["format", "suffix", "runtimes", "edgekit writes", "status", "write here", "run here"], body))

    emit({"formats": rows}, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("formats")(formats_command)
