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


def published_rows(target, directory: Optional[Path] = None) -> list[dict]:
    """Per unit x runtime x precision: how well the latency model matches published measurements
    (n points, median ratio error in-sample and cross-validated), or that none exist (datasheet roofline);
    your refits (edgekit truth add) replace the shipped fits and say so."""
    from edgekit.targets.fitted import tables_dir
    from edgekit.targets.published_fit import user_fits

    rows = []
    for unit in target.units:
        yours = {(f.runtime, f.precision): f for f in user_fits(directory or tables_dir(), target.name, unit.name)}
        shipped = {(f.runtime, f.precision): f for f in unit.published}
        for precision in unit.precisions:
            fits = [(yours.get(k, f), k in yours) for k, f in {**shipped, **yours}.items() if k[1] == precision]
            for fit, refit in fits:
                rows.append({"unit": unit.name, "runtime": fit.runtime, "precision": precision, "points": fit.points,
                             "models": list(fit.models), "median_error": fit.median_error,
                             "cv_median_error": fit.cv_median_error, "sources": list(fit.sources),
                             "fit": "yours (edgekit truth add)" if refit else "shipped"})
            if not fits:
                rows.append({"unit": unit.name, "runtime": unit.runtime, "precision": precision, "points": 0,
                             "models": [], "median_error": None, "cv_median_error": None, "sources": [], "fit": None})
    return rows


def _error(value) -> str:
    return "-" if value is None else f"x{value:.2f}"


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


def model_estimates(target, model: Path, threads: Optional[int], store_path: Optional[Path]) -> dict:
    """Latency per unit and precision (edgekit.targets.estimate: measured > calibrated > modeled) and memory of one model."""
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.memory import estimate_memory
    from edgekit.runtimes.bundle import read_bundle, sha256_file
    from edgekit.runtimes.formats import format_for_suffix
    from edgekit.runtimes.precision import PRECISIONS
    from edgekit.targets.estimate import estimate, open_store
    from edgekit.targets.profile import model_file

    path = model_file(model)
    if Path(model).is_dir():
        fmt = read_bundle(model, verify=False).manifest.format
    else:
        found = format_for_suffix(path.suffix)
        fmt = found.name if found else None
    nodes = graph_stats(path).nodes
    sha = sha256_file(path)
    directory = Path(store_path).parent if store_path else None  # calibrations live beside the store
    with open_store(store_path) as store:
        rows = [estimate(target, unit.name, precision, ops=nodes, model_sha256=sha, fmt=fmt, threads=threads,
                         store=store, directory=directory).to_json()
                for unit in target.units for precision in unit.precisions]
    memory = estimate_memory(path)
    fits = {p: (memory.megabytes(p) <= target.memory_gb * 1000 if target.memory_gb else None) for p in PRECISIONS}
    return {"model": str(model), "threads": threads, "latency": rows, "memory": {**memory.to_json(), "fits": fits}}


@app.command("show")
def show_command(
    name: Optional[str] = typer.Argument(None, help="Target name or alias."),
    target_file: Optional[Path] = typer.Option(None, "--target-file", help="A target profile TOML instead of a name."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Bundle or .onnx: predict its latency per unit and precision."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the prediction and the stored measurement to use "
                                "(default 1, as edgekit profile measures)."),
    store_path: Optional[Path] = typer.Option(None, "--store", help="Latency store with measurements (default: user cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one target: its compute units, peak throughput, memory and constraints; with --model, the
    model's predicted latency on each unit and precision, and whether it fits in memory."""
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets import resolve_target

    if name is None and target_file is None:
        raise UsageError("give a target name (edgekit targets list) or --target-file")
    target = resolve_target(name, target_file)
    estimates = model_estimates(target, model, threads, store_path) if model is not None else None

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
        truth = [[r["unit"], r["runtime"], r["precision"], str(r["points"]), _error(r["median_error"]),
                  _error(r["cv_median_error"]) if r["points"] else "no published points: datasheet roofline",
                  ", ".join(r["models"]) + (" (your refit)" if r["fit"] and r["fit"] != "shipped" else "")]
                 for r in data["published"]]
        out.print(table("error against published measurements (median ratio; edgekit benchmarks/device_truth.py)",
                        ["unit", "runtime", "precision", "n", "median error", "cross-validated", "models"], truth))
        if estimates is not None:
            lat_rows = [[r["unit"], r["precision"], "unknown" if r["ms"] is None else f"{r['ms']:.3f}", r["source"],
                         _error(r.get("error")), "; ".join(r["notes"])] for r in estimates["latency"]]
            out.print(table(f"{model} on {target.name} (batch 1)", ["unit", "precision", "ms", "source", "error", "notes"],
                            lat_rows))
            mem = estimates["memory"]
            fit_text = ", ".join(f"{p} {mb:.1f} MB" + ("" if mem["fits"][p] in (None, True) else " (does not fit)")
                                 for p, mb in mem["megabytes"].items())
            out.print(f"memory (weights + peak activations): {fit_text}; device memory "
                      + (f"{target.memory_gb:g} GB" if target.memory_gb else "not published"))

    data = target.to_dict()
    data["published"] = published_rows(target, Path(store_path).parent if store_path else None)
    if estimates is not None:
        data["model_estimates"] = estimates
    emit(data, as_json, render)
