"""``edgekit inspect``: inputs, outputs, op histogram, parameters and MACs of every graph of a bundle (or one .onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import typer

from edgekit.runtimes.errors import ModelLoadError
from edgekit.runtimes.spec import TensorSpec

from .common import emit, out, table

__all__ = ["register", "describe_graph"]


def describe_graph(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> dict[str, Any]:
    """One graph as data: its file, I/O specs, op histogram, parameters and MACs (dynamic axes count as 1)."""
    from edgekit.exporters.graph_stats import graph_stats

    return {
        "file": str(path),
        "inputs": [s.to_json() for s in inputs],
        "outputs": [s.to_json() for s in outputs],
        **graph_stats(path).to_json(),
    }


def _shape(spec: dict[str, Any]) -> str:
    return "[" + ", ".join(str(d) for d in spec["shape"]) + "]"


def _render_graph(title: str, graph: dict[str, Any]) -> None:
    io_rows = [[kind, s["name"], _shape(s), s["dtype"]] for kind in ("input", "output") for s in graph[f"{kind}s"]]
    out.print(table(title, ["", "name", "shape", "dtype"], io_rows))
    out.print(f"parameters: {graph['params']:,}   MACs (batch 1, dynamic axes 1): {graph['macs']:,}   "
              f"nodes: {graph['nodes']}   opset: {graph['opset']}")
    out.print(table("ops", ["op", "count"], [[op, n] for op, n in graph["ops"].items()]))


def inspect_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="List the nodes this target's units would run elsewhere or fail on (op coverage)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="With --target: check this unit only (default: every unit with a published op list)."),
) -> None:
    """Describe a model: I/O specs, op histogram, parameter count and MACs (batch 1) of each graph."""
    from edgekit.exporters.onnx import read_onnx_specs
    from edgekit.runtimes.bundle import read_bundle

    manifest = None
    if model.is_dir():
        bundle = read_bundle(model)
        manifest = bundle.manifest
        graphs = {name: describe_graph(bundle.file(name), g.inputs, g.outputs) for name, g in manifest.graphs.items()}
    elif model.is_file():
        graphs = {"model": describe_graph(model, *read_onnx_specs(model))}
    else:
        raise ModelLoadError(f"{model}: no such file or bundle directory")
    # one graph: its fields at the top level too (the layout of single-graph bundles since the first release)
    data: dict[str, Any] = {**(next(iter(graphs.values())) if len(graphs) == 1 else {}), "graphs": graphs}
    if manifest is not None:
        keys = ("name", "target", "format", "precision", "task", "latency", "validation")
        data["manifest"] = {k: manifest.to_json().get(k) for k in keys}

    def render() -> None:
        for name, graph in graphs.items():
            _render_graph(graph["file"] if len(graphs) == 1 else f"graph {name}: {graph['file']}", graph)
        if manifest is not None:
            out.print(f"bundle: {manifest.name} for {manifest.target} ({manifest.task}, {manifest.format} "
                      f"{manifest.precision}, {len(graphs)} graph(s))", markup=False)
            variant = manifest.validation.get("precision") or {}
            if "token_agreement" in variant:  # a language model's int8/fp16 decoder, measured against fp32
                from edgekit.models.slm.quantize import agreement_line

                out.print(agreement_line(manifest.precision, variant), markup=False)

    if target is not None:
        data["op_coverage"] = _coverage(model, manifest, target, unit)
    base_render = render

    def render_all() -> None:
        base_render()
        for graph, reports in data.get("op_coverage", {}).items():
            _render_coverage(graph if len(data["op_coverage"]) > 1 else "", reports)

    emit(data, as_json, render_all)


def _coverage(model: Path, manifest, target: str, unit: str | None) -> dict[str, list[dict[str, Any]]]:
    """graph -> the op-coverage report of each unit checked (edgekit.exporters.coverage)."""
    from edgekit.exporters.coverage import coverage_of_file
    from edgekit.runtimes.bundle import bundle_member
    from edgekit.targets import resolve_target

    resolved = resolve_target(target, None)
    files = {name: bundle_member(model, g.file) for name, g in manifest.graphs.items()} if manifest else {"model": model}
    units = [unit] if unit else None
    return {name: [r.to_json() for r in coverage_of_file(path, resolved, units)] for name, path in files.items()}


def _render_coverage(graph: str, reports: list[dict[str, Any]]) -> None:
    from edgekit.exporters.coverage import CoverageReport

    for record in reports:
        report = CoverageReport.from_json(record)
        out.print(("" if not graph else f"[{graph}] ") + report.summary(), markup=False)
        if report.nodes:
            rows = [[n.name, n.op_type, n.action, n.reason] for n in report.nodes if not n.reason.startswith("after ")]
            after = len(report.nodes) - len(rows)
            if after:  # split once: the nodes after the cut move with it; --json lists each
                rows.append(["...", "", report.nodes[0].action, f"{after} more nodes after the cut (--json lists them)"])
            out.print(table(f"nodes {report.target} unit {report.unit} will not run", ["node", "op", "what happens", "why"], rows))


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
