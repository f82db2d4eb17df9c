"""``edgekit lut``: block lookup tables for a search space (build by measuring, or import once-for-all's)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, progress, table

__all__ = ["app", "register"]

app = typer.Typer(help="Block latency lookup tables for OFA search spaces.", no_args_is_help=True)


@app.command("build")
def build_command(
    space: str = typer.Option("ofa-mbv3-shapes", "--space", help="Search space name (edgekit ofa info)."),
    resolutions: Optional[str] = typer.Option(None, "--resolutions", help="Comma-separated; default: all of the space's."),
    fit_subnets: int = typer.Option(12, "--fit-subnets", help="Whole subnets timed to fit scale and intercept."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | fp16 | int8 (blocks exported and converted)."),
    runs: int = typer.Option(40, "--runs", help="Timed runs per block."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fitting subnets."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Time every distinct block of a space on this host, then fit the table to whole subnets."""
    from edgekit.models.ofa import get_space
    from edgekit.profiling import build_block_table, fit_configs, time_subnets
    from edgekit.targets.predictor import table_file, tables_dir

    space_obj = get_space(space)
    chosen = [int(r) for r in resolutions.split(",")] if resolutions else list(space_obj.resolutions)
    with progress(not as_json) as say:
        raw = build_block_table(space_obj, chosen, threads=threads, runs=runs, progress=say, precision=precision)
        configs = fit_configs(space_obj, fit_subnets, seed, chosen)
        timings = time_subnets(space_obj, configs, threads=threads, runs=runs, progress=say, precision=precision)
    fitted = raw.fit([[b.key for b in space_obj.blocks(c)] for c in configs], [t.stats.p50_ms for t in timings])
    path = table_file(tables_dir(), space, "host", precision, threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    fitted.save(path)
    data = {"file": str(path), "precision": precision, "blocks": len(fitted.entries), "scale": fitted.scale, "intercept_ms": fitted.intercept_ms,
            "fitted_on": fitted.fitted_on, "resolutions": chosen}
    emit(data, as_json, lambda: out.print(
        f"{len(fitted.entries)} blocks measured; subnet = {fitted.scale:.3f} x sum(blocks) + {fitted.intercept_ms:.3f} ms "
        f"(fit on {fitted.fitted_on} subnets); saved {path}"))


@app.command("import")
def import_command(
    file: Path = typer.Argument(..., help="A once-for-all latency table (.yaml)."),
    target: str = typer.Option(..., "--target", help="The target the table was measured on (a name you choose)."),
    space: str = typer.Option("ofa-mbv3-w1.0", "--space", help="The space whose blocks it covers."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Import a published once-for-all latency table (read with yaml.safe_load, keys validated)."""
    from edgekit.targets.lut import load_ofa_yaml
    from edgekit.targets.predictor import table_file, tables_dir

    imported = load_ofa_yaml(file, target)
    path = table_file(tables_dir(), space, target, "fp32", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    imported.save(path)
    emit({"file": str(path), "blocks": len(imported.entries)}, as_json,
         lambda: out.print(f"imported {len(imported.entries)} blocks from {file}; saved {path}"))


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the block tables saved in the cache."""
    from edgekit.targets.lut import BlockTable
    from edgekit.targets.predictor import tables_dir

    found = sorted((tables_dir() / "tables").glob("*.json"))
    tables = [(p, BlockTable.load(p)) for p in found]
    rows = [[p.stem, len(t.entries), t.source, f"{t.scale:.3f}", f"{t.intercept_ms:.3f}", t.fitted_on] for p, t in tables]
    emit([{"file": str(p), **{k: v for k, v in t.to_json().items() if k != "entries"}} for p, t in tables], as_json,
         lambda: out.print(table("block tables", ["table", "blocks", "source", "scale", "intercept ms", "fit on"], rows)))


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(app, name="lut")
