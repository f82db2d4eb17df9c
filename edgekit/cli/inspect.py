"""``edgekit inspect``: inputs, outputs, op histogram, parameters and MACs of a bundle or .onnx."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.runtimes.errors import ModelLoadError

from .common import emit, out, table

__all__ = ["register"]


def inspect_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a model: I/O specs, op histogram, parameter count and MACs (batch 1)."""
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.onnx import read_onnx_specs
    from edgekit.runtimes.bundle import read_bundle

    manifest = None
    if model.is_dir():
        bundle = read_bundle(model)
        manifest = bundle.manifest
        graph = manifest.graph()
        path, inputs, outputs = bundle.file(), graph.inputs, graph.outputs
    elif model.is_file():
        path = model
        inputs, outputs = read_onnx_specs(path)
    else:
        raise ModelLoadError(f"{model}: no such file or bundle directory")
    stats = graph_stats(path)
    data = {
        "file": str(path),
        "inputs": [s.to_json() for s in inputs],
        "outputs": [s.to_json() for s in outputs],
        **stats.to_json(),
    }
    if manifest is not None:
        data["manifest"] = {k: manifest.to_json()[k] for k in ("name", "target", "format", "precision", "latency", "validation")}

    def render() -> None:
        io_rows = [["input", s.name, s.shape_str(), s.dtype] for s in inputs] + [
            ["output", s.name, s.shape_str(), s.dtype] for s in outputs
        ]
        out.print(table(str(path), ["", "name", "shape", "dtype"], io_rows))
        out.print(f"parameters: {stats.params:,}   MACs (batch 1): {stats.macs:,}   nodes: {len(stats.nodes)}   opset: {stats.opset}")
        out.print(table("ops", ["op", "count"], [[op, n] for op, n in stats.ops.items()]))
        if manifest is not None:
            out.print(f"bundle: {manifest.name} for {manifest.target} ({manifest.format} {manifest.precision})")

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
