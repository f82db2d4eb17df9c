"""``edgekit targets list|show``: the device profiles edgekit knows."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, table

__all__ = ["app"]

app = typer.Typer(help="List and show target device profiles.", no_args_is_help=True)


def _peak(unit) -> str:
    scale = {"fp32": "TFLOPS", "fp16": "TFLOPS", "int8": "TOPS"}
    return ", ".join(f"{p} {v:g} {scale[p]}" for p, v in unit.peak.items()) or "not published"


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the bundled target profiles."""
    from edgekit.targets import list_targets

    found = list_targets()
    rows = [
        [t.name, ", ".join(t.aliases), ", ".join(u.name for u in t.units), ", ".join(t.formats),
         f"{t.memory_gb:g} GB" if t.memory_gb else "?", "" if t.verified else "unverified"]
        for t in found
    ]
    emit([t.to_dict() for t in found], as_json,
         lambda: out.print(table("targets", ["name", "aliases", "units", "formats", "memory", ""], rows)))


@app.command("show")
def show_command(
    name: Optional[str] = typer.Argument(None, help="Target name or alias."),
    target_file: Optional[Path] = typer.Option(None, "--target-file", help="A target profile TOML instead of a name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one target: its compute units, peak throughput, memory and constraints."""
    from edgekit.pipeline import resolve_target
    from edgekit.runtimes.errors import UsageError

    if name is None and target_file is None:
        raise UsageError("give a target name (edgekit targets list) or --target-file")
    target = resolve_target(name, target_file)

    def render() -> None:
        bandwidth = f"{target.memory_bandwidth_gbps:g} GB/s" if target.memory_bandwidth_gbps else "not published"
        memory = f"{target.memory_gb:g} GB" if target.memory_gb else "not published"
        out.print(f"[bold]{target.name}[/bold]  {target.description}")
        out.print(f"memory {memory}, bandwidth {bandwidth}; default unit {target.default_unit}; profile {target.source}"
                  + ("" if target.verified else "  [yellow](figures unverified)[/yellow]"))
        rows = []
        for unit in target.units:
            limits = [text for flag, text in ((unit.static_shapes, "static shapes"), (unit.int8_only, "int8 only")) if flag]
            if unit.max_batch:
                limits.append(f"batch <= {unit.max_batch}")
            rows.append([unit.name, unit.kind, unit.runtime, ", ".join(unit.formats), ", ".join(unit.precisions),
                         _peak(unit), ", ".join(limits) or "-"])
        out.print(table("units", ["unit", "kind", "runtime", "formats", "precisions", "peak (dense)", "constraints"], rows))

    emit(target.to_dict(), as_json, render)
