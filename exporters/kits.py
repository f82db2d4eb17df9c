"""Device build kits: the files a bundle carries for a runtime that compiles the model on (or for) the device.

TensorRT builds its engine on the Jetson from the bundle's ONNX; the Edge TPU needs the int8 .tflite
compiled by ``edgetpu_compiler`` (an x86-64 tool). Neither can run where edgekit exports, so the bundle
gets a kit instead. A kit is keyed by the *runtime* that needs it (the runtimes come from the format
records of :mod:`edgekit.runtimes.formats`) and the format of the file it starts from: the pipeline writes
every kit whose runtime one of the target's units names and whose source format is the bundle's format,
so no target is named in code.

Example:
    >>> from edgekit.targets import load_target
    >>> [k.runtime for k in kits_for(load_target("jetson"), "onnx", "fp32")]
    ['tensorrt']
    >>> [k.runtime for k in kits_for(load_target("coral"), "tflite", "int8")], kits_for(load_target("host"), "onnx", "fp32")
    (['edgetpu'], [])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgekit.runtimes.formats import import_ref
from edgekit.runtimes.spec import TensorSpec

__all__ = ["DeviceKit", "KITS", "kits_for", "write_device_kits"]


@dataclass(frozen=True)
class DeviceKit:
    """A build kit: for ``runtime``, made from a bundle file of ``source_format`` at one of ``precisions``
    (empty: any) by ``writer`` (``"module:function"``, called as ``writer(model_file, kit_dir, target,
    precision, inputs, example_sizes, unit, compression=...)`` and returning the manifest's record of the kit;
    ``compression`` is the manifest's record of ``edgekit compress``, e.g. ``{"sparsity": "2:4"}``, or None).
    ``graphs_writer`` writes the kit of a bundle of several graphs (an encoder-decoder LM), called as
    ``graphs_writer(files, kit_dir, target, precision, inputs, axis_ranges, unit, compression=...)`` with
    dicts by graph; a kit without one is written for single-graph bundles only."""

    runtime: str
    source_format: str
    writer: str
    precisions: tuple[str, ...] = ()
    graphs_writer: str | None = None


KITS: tuple[DeviceKit, ...] = (
    DeviceKit("tensorrt", "onnx", "edgekit.exporters.tensorrt:write_tensorrt_kit",
              graphs_writer="edgekit.exporters.tensorrt:write_tensorrt_graph_kits"),
    DeviceKit("edgetpu", "tflite", "edgekit.exporters.edgetpu:write_edgetpu_kit", ("int8",)),
)


def kits_for(target: Any, fmt: str, precision: str) -> list[DeviceKit]:
    """The kits a bundle of ``fmt`` at ``precision`` for ``target`` carries: those of the runtimes of its units
    that run ``precision``."""
    runtimes = {unit.runtime for unit in target.units if not unit.precisions or precision in unit.precisions}
    return [kit for kit in KITS if kit.runtime in runtimes and kit.source_format == fmt
            and (not kit.precisions or precision in kit.precisions)]


def write_device_kits(target: Any, fmt: str, precision: str, model_file: Path, kit_dir: Path,
                      inputs: Sequence[TensorSpec], example_sizes: Mapping[str, int], unit: str | None = None,
                      say: Callable[[str], None] = lambda message: None,
                      compression: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write every kit of :func:`kits_for` into ``kit_dir`` (the staged bundle); runtime -> its record.
    ``unit`` is the chosen unit (a kit uses it when it runs that kit's runtime)."""
    records = {}
    for kit in kits_for(target, fmt, precision):
        chosen = unit if unit and target.unit(unit).runtime == kit.runtime else None
        say(f"writing the {kit.runtime} build kit")
        writer = import_ref(kit.writer, f"{kit.runtime} kit")
        records[kit.runtime] = writer(model_file, kit_dir, target, precision, inputs, example_sizes, chosen,
                                      compression=compression)
    return records


def device_step(target: Any, fmt: str, precision: str, files: Mapping[str, Path], inputs: Mapping[str, Sequence[TensorSpec]],
                example_sizes: Mapping[str, int], kit_dir: Path, *, unit: str | None = None, strict: bool = False,
                say: Callable[[str], None] = lambda message: None,
                compression: Mapping[str, Any] | None = None,
                axis_ranges: Mapping[str, Mapping[str, tuple[int, int, int]]] | None = None,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline's device step for a bundle's graph ``files``: the op coverage of the unit that runs them (a
    warning per graph; ExportError naming the nodes under ``strict``), then the kits (a bundle of several graphs
    gets those with a ``graphs_writer``, with each graph's ``axis_ranges``).
    Returns (coverage record by graph, kit records by runtime); empty when nothing applies."""
    from edgekit.runtimes.errors import ExportError

    from .coverage import coverage_of_file

    chosen = unit or target.default_unit
    coverage: dict[str, Any] = {}
    if target.unit(chosen).ops is not None:
        for graph, path in files.items():
            (report,) = coverage_of_file(path, target, [chosen])
            coverage[graph] = report.to_json()
            if report.nodes:
                names = ", ".join(f"{n.name} ({n.op_type})" for n in report.nodes[:5])
                more = f" and {len(report.nodes) - 5} more" if len(report.nodes) > 5 else ""
                if strict:
                    raise ExportError(f"--strict: {path.name}: {len(report.nodes)} node(s) {target.name} unit {chosen} "
                                      f"cannot run: {names}{more} ({report.source}); nothing was written")
                say(f"warning: {report.summary()}")
    kits: dict[str, Any] = {}
    if len(files) == 1:
        (graph, path), = files.items()
        kits = write_device_kits(target, fmt, precision, path, kit_dir, inputs[graph], example_sizes, unit, say,
                                 compression)
    else:
        for kit in kits_for(target, fmt, precision):
            if kit.graphs_writer is None:
                continue
            chosen = unit if unit and target.unit(unit).runtime == kit.runtime else None
            say(f"writing the {kit.runtime} build kit ({', '.join(files)})")
            writer = import_ref(kit.graphs_writer, f"{kit.runtime} kit")
            kits[kit.runtime] = writer(files, kit_dir, target, precision, inputs, dict(axis_ranges or {}), chosen,
                                       compression=compression)
    return coverage, kits
