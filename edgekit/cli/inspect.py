"""``edgekit inspect``: inputs, outputs, op histogram, parameters and MACs of every graph of a bundle (or one .onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

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

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
