"""The export chain: resolve the model, export it, validate it, time it, and write the bundle.

Every family (single- and multi-graph) and every format go through the same chain: the model family
registry (:mod:`edgekit.models.registry`) gives a :class:`ModelSource` of one or more graphs, the
format's exporter (:mod:`edgekit.exporters.base`) writes and validates each, and the pipeline builds
the manifest itself: parity, accuracy, host timing in the format's runtime, the target prediction for
the units that run the format, toolchain versions. The steps live in :mod:`edgekit.export_steps`.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "bundle"
    >>> result = export_bundle(ExportRequest(target="host", out=out, measure=MeasureConfig(runs=5)))
    >>> result.manifest.validation["passed"]
    True
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import edgekit
from edgekit import export_steps as steps
from edgekit.exporters.base import ExportOptions, exporter_for
from edgekit.exporters.kits import device_step
from edgekit.models.registry import Family, ModelRequest, ModelSource, families, find_family
from edgekit.runtimes.bundle import Graph, Manifest
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.formats import get_format, import_ref
from edgekit.targets import resolve_target  # torch-free: re-exported for callers of the pipeline

__all__ = ["ExportRequest", "OutputConfig", "SearchConfig", "ValidationConfig", "MeasureConfig", "ExportResult",
           "export_bundle", "resolve_target", "toolchain_versions"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class OutputConfig:
    """The file: its format and precision, how the exporter writes it, and what calibrates int8."""

    format: str | None = None  # None: the target's first format edgekit can write here; "all": every one, one bundle
    precision: str | None = None  # None: fp32, or chosen by the search when a budget is set
    opset: int = 17
    dynamo: bool = False
    int8_calibration_data: Path | None = None  # --calib-data: .npy samples (N, ...) that calibrate int8 only
    int8_calibration_samples: int = 64  # --calib-samples
    layout: str = "nchw"  # --layout nhwc: image inputs channels-last, transposed inside the graph


@dataclass(frozen=True)
class SearchConfig:
    """``--budget-ms``: select subnet x unit x precision of a searchable family under a latency budget first."""

    budget_ms: float | None = None
    memory_mb: float | None = None
    unit: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class ValidationConfig:
    """What an export must keep: parity with torch, and held-out accuracy (or agreement) of each step."""

    atol: float = 1e-4  # parity criterion: |file - torch| <= atol + rtol * |torch|, element-wise
    rtol: float = 1e-3
    max_accuracy_drop: float = 0.05  # --bn-data or int8/fp16 refused above this drop of held-out accuracy
    max_rel_error: float = 0.25  # ... or, without labels, above this mean relative output error
    min_token_agreement: float = 0.99  # an LM's int8/fp16 decoder refused below this greedy token agreement with fp32
    strict: bool = False  # --strict: refuse a model with nodes the target's unit cannot run (op coverage)


@dataclass(frozen=True)
class MeasureConfig:
    """Host latency measurement after export (0 runs skips it)."""

    runs: int = 50
    threads: int = 1


@dataclass(frozen=True)
class ExportRequest:
    """Everything ``edgekit export`` needs; defaults export the built-in model as fp32 ONNX."""

    out: Path
    model: ModelRequest = field(default_factory=ModelRequest)
    target: str | None = "host"
    target_file: Path | None = None
    output: OutputConfig = field(default_factory=OutputConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    force: bool = False  # replace an existing --out that is not an edgekit bundle
    source: ModelSource | None = None  # a model built already (edgekit compress): exported instead of loading model.ref

    @property
    def precision(self) -> str:
        assert self.output.precision is not None, "fixed by export_bundle before use"
        return self.output.precision


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: Manifest
    latency_note: str | None = None  # why the manifest has no latency on the target, when it has none


def toolchain_versions(fmt: str = "onnx") -> dict[str, str]:
    """Versions of the packages that shaped an artifact of format ``fmt`` (those installed): torch, the
    format's exporter and runtime modules."""
    from importlib import metadata

    record = get_format(fmt)
    versions = {"python": platform.python_version(), "edgekit": edgekit.__version__}
    for package in dict.fromkeys(("torch", *record.exporter_modules, *record.runtime_modules)):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def target_formats(target) -> tuple[str, ...]:
    """The formats the target runs in its own order of preference: its units in order, each unit's
    ``formats`` in order (rpi5's cpu lists tflite before onnx).

    Example:
        >>> target_formats(resolve_target("rpi5")), target_formats(resolve_target("host"))
        (('tflite', 'onnx'), ('onnx', 'tflite'))
    """
    return tuple(dict.fromkeys(fmt for unit in target.units for fmt in unit.formats))


def _default_precision(target, fmt: str, say: Progress) -> str:
    """fp32, unless no unit of the target runs a ``fmt`` file at fp32 (the Edge TPU runs int8 only): then the
    first precision that a unit runs and edgekit can write in ``fmt``, said in the progress.

    Example:
        >>> _default_precision(resolve_target("coral"), "tflite", print)
        no unit of coral-edgetpu runs tflite at fp32: exporting int8
        'int8'
        >>> _default_precision(resolve_target("rpi5"), "tflite", print)
        'fp32'
    """
    from edgekit.runtimes.precision import PRECISIONS
    from edgekit.targets.estimate import units_for_format

    runs = [p for p in PRECISIONS if units_for_format(target, fmt, p) and p in get_format(fmt).precisions]
    if not runs or "fp32" in runs:
        return "fp32"
    say(f"no unit of {target.name} runs {fmt} at fp32: exporting {runs[0]}")
    return runs[0]


def _installed(fmt: str) -> bool:
    from edgekit.runtimes.formats import missing_modules  # looked up per call: tests stand in a machine without an extra

    return not missing_modules(get_format(fmt).exporter_modules)


def _writable_formats(target) -> list[str]:
    """The target's formats that edgekit can write with what is installed here, best first."""
    return [fmt for fmt in target_formats(target) if get_format(fmt).available and _installed(fmt)]


def _choose_format(request: ExportRequest, target) -> str:
    """``--format``, else the target's first format (see :func:`target_formats`) that edgekit can write with
    what is installed here; a named format whose exporter is not installed names its pip extra."""
    from edgekit.runtimes.formats import formats, missing_modules

    fmt = request.output.format
    if fmt is not None:
        if fmt not in target.formats:
            raise UsageError(f"--format {fmt}: target {target.name} runs {sorted(target.formats)}")
        record = get_format(fmt)
        missing = missing_modules(record.exporter_modules) if record.available else ()
        if missing:
            raise UsageError(f"--format {fmt}: its exporter needs {', '.join(missing)}: pip install 'edgekit[{record.extra}]'")
        return fmt
    writable = _writable_formats(target)
    if writable:
        return writable[0]
    raise UsageError(
        f"target {target.name} runs {sorted(target.formats)}; edgekit can write "
        f"{[f.name for f in formats() if f.available and _installed(f.name)]} with what is installed here"
    )


def _check_family_options(request: ExportRequest, family: Family) -> None:
    """Options the family cannot take are refused before anything is loaded."""
    ref, precision = request.model.ref or family.name, request.precision
    calib, bn_data = request.output.int8_calibration_data, request.model.bn_data
    if calib is not None and precision != "int8" and request.search.budget_ms is None:
        raise UsageError(f"--calib-data {calib}: calibrates int8 only and --precision is {precision}; "
                         "BatchNorm recalibration images go to --bn-data")
    if bn_data is not None and not family.bn_data:
        takes = ", ".join(f.name for f in families() if f.bn_data)
        raise UsageError(f"--bn-data {bn_data}: {ref} has no BatchNorm recalibration step ({takes} has); "
                         "int8 calibration samples go to --calib-data")
    if family.precisions is not None and precision not in family.precisions:
        raise UsageError(f"--precision {precision}: {ref} exports {', '.join(family.precisions)}"
                         + (f" ({family.precision_note})" if family.precision_note else ""))
    if request.output.dynamo and not family.dynamo:
        raise UsageError(f"--dynamo: {ref} exports with the TorchScript exporter only"
                         + (f" ({family.dynamo_note})" if family.dynamo_note else ""))


def _search_record(search: dict[str, Any], latency: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The search's choice and, when it was measured here, whether the budget held."""
    record = dict(search)
    measured = next((item for item in latency if item["source"] == "measured" and item["target"] == "host"), None)
    if search["target"] == "host" and measured is not None:
        record["measured_ms"] = measured["ms"]
        record["budget_held"] = measured["ms"] <= search["budget_ms"]
    return record


def _apply_selection(request: ExportRequest, family: Family, target, say: Progress) -> tuple[ExportRequest, dict[str, Any]]:
    """Choose subnet x precision under the budget among formats edgekit can write; fix them in the request."""
    from edgekit.search.run import run_selection, selection_json

    if not family.searchable:
        names = ", ".join(f.name for f in families() if f.searchable)
        raise UsageError(f"--budget-ms selects among subnets of a searchable family ({names}), not {request.model.ref!r}")
    if request.model.subnet is not None:
        raise UsageError("pass --subnet or --budget-ms, not both")
    config = request.search
    say(f"searching for the best subnet under {config.budget_ms:g} ms on {target.name}")
    threads = request.measure.threads if target.name == "host" else None
    found, selection = run_selection(
        family.name, target, config.budget_ms, memory_mb=config.memory_mb, unit=config.unit,
        precision=request.output.precision or "auto", seed=config.seed, threads=threads, writable_only=True,
    )
    data = selection_json(found, target, selection)
    best = data["best"]
    data["pareto"] = data["pareto"][:: max(1, len(data["pareto"]) // 20)]  # keep the manifest small
    chosen = replace(request.model, ref=family.name, subnet=selection.result.best.config.to_json())
    output = replace(request.output, precision=best["precision"], format=best["format"])
    return replace(request, model=chosen, output=output), data


def _latency(exporter, source, exported, request: ExportRequest, target, unit: str | None, say: Progress):
    """Host timing in the format's runtime, and the prediction for the target's units that run the file."""
    latency: list[Mapping[str, Any]] = []
    if request.measure.runs > 0:
        say("measuring latency on this host")
        latency.append(steps.measure_on_host(exporter, source, exported, request.measure.runs, request.measure.threads,
                                             request.precision))
    timed = exported[steps.timed_graph(source)]
    predicted, note = steps.predict_on_target(exporter, timed.file, target, request.precision, unit=unit)
    if source.timing is not None:  # a model of several graphs: say which graph the prediction is of
        graph = source.timing.graph
        predicted = [{**entry, "graph": graph, "what": f"the {graph} graph, its dynamic axes at 1"} for entry in predicted]
    return latency + predicted, note


def _family_variant(request: ExportRequest, family: Family, exporter, target, say: Progress) -> ExportResult:
    """A precision variant of a model of several graphs: the fp32 bundle first (validated as usual), then the
    family's hook writes and measures the variant (refusing it below the threshold), with the target's
    prediction for the variant's timed graph."""

    def predict(graph: str, file: Path) -> list[dict[str, Any]]:
        entries, _ = steps.predict_on_target(exporter, file, target, request.precision)
        return [{**e, "graph": graph, "what": f"the {graph} graph, its dynamic axes at 1"} for e in entries]

    with tempfile.TemporaryDirectory(prefix="edgekit-fp32-") as work:
        fp32 = export_bundle(replace(request, out=Path(work) / "fp32", force=False,
                                     output=replace(request.output, precision="fp32")), say)
        say(f"making the {request.precision} variant")
        write = import_ref(family.variant, f"family {family.name}")
        manifest = write(fp32.path, request.out, request.precision, min_agreement=request.validation.min_token_agreement,
                         threads=request.measure.threads, force=request.force, say=say, predict=predict)
    return ExportResult(Path(request.out), manifest, fp32.latency_note)


def _export_all(request: ExportRequest, target, say: Progress) -> ExportResult:
    """``--format all``: the model exported (and validated, timed) in every format the target runs that edgekit
    can write here, into one bundle: the first format is the manifest's own, the others go to ``formats``."""
    import shutil

    fmts = _writable_formats(target)
    if not fmts:
        _choose_format(replace(request, output=replace(request.output, format=None)), target)  # raises, naming why
    if request.search.budget_ms is not None:
        raise UsageError("--format all exports every format at one --precision; --budget-ms selects one format")
    with tempfile.TemporaryDirectory(prefix="edgekit-all-") as work:
        results = []
        for fmt in fmts:
            say(f"--format all: {fmt} ({len(results) + 1} of {len(fmts)})")
            results.append(export_bundle(replace(request, out=Path(work) / fmt, force=False,
                                                 output=replace(request.output, format=fmt)), say))
        first, others = results[0], results[1:]
        with BundleWriter(request.out, force=request.force) as stage:
            shutil.copytree(first.path, stage.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
            formats: dict[str, Any] = {}
            for result in others:
                m = result.manifest
                for graph in m.graphs.values():
                    shutil.copyfile(result.path / graph.file, stage.path / graph.file)
                formats[m.format] = {"graphs": dict(m.graphs), "precision": m.precision, "validation": dict(m.validation),
                                     "latency": [dict(e) for e in m.latency], "toolchain": dict(m.toolchain),
                                     "provenance": dict(m.provenance)}
            say("writing bundle")
            manifest = stage.commit(replace(first.manifest, files={}, formats=formats))
    return ExportResult(Path(request.out), manifest, first.latency_note)


def export_bundle(request: ExportRequest, progress: Progress | None = None) -> ExportResult:
    """Run the whole chain and return the written bundle; nothing is written unless validation passes."""
    say = progress or (lambda message: None)
    BundleWriter(request.out, force=request.force).check_destination()  # refuse a non-bundle --out before any work
    target = resolve_target(request.target, request.target_file)
    if request.output.format == "all":
        return _export_all(request, target, say)
    family = find_family(request.model.ref)
    search: dict[str, Any] | None = None
    if request.search.budget_ms is not None:
        request, search = _apply_selection(request, family, target, say)
    fmt = _choose_format(request, target)
    if request.output.precision is None:
        request = replace(request, output=replace(request.output, precision=_default_precision(target, fmt, say)))
    exporter = exporter_for(fmt, request.precision)
    _check_family_options(request, family)
    if family.variant is not None and request.precision != "fp32":
        return _family_variant(request, family, exporter, target, say)
    say(f"loading model {request.model.ref or 'default'}")
    source = request.source if request.source is not None else \
        family.load(replace(request.model, static_shapes=get_format(fmt).static_shapes))
    if request.output.layout != "nchw":
        from edgekit.models.layout import LAYOUTS, channels_last

        if request.output.layout not in LAYOUTS:
            raise UsageError(f"--layout {request.output.layout!r}: expected one of {', '.join(LAYOUTS)}")
        source = channels_last(source)
    if not source.single_graph and request.precision != "fp32":
        raise UsageError(f"--precision {request.precision}: {source.name} has graphs {', '.join(source.graphs)}; "
                         "precision variants are written for single-graph models")
    held_out = source.data.held_out() if source.data.held_out is not None else None
    check = request.validation
    bn_step = steps.bn_data_step(request.model, source, held_out, check.max_accuracy_drop, say)
    options = ExportOptions(opset=request.output.opset, dynamo=request.output.dynamo, metadata={
        "edgekit_version": edgekit.__version__, "model": source.name, "target": target.name, "precision": request.precision})
    with BundleWriter(request.out, force=request.force) as stage, tempfile.TemporaryDirectory(prefix="edgekit-export-") as work:
        exported = steps.export_graphs(exporter, source, options, atol=check.atol, rtol=check.rtol, stage=stage.path,
                                       work=Path(work), precision=request.precision, say=say)
        validation = steps.validation_record(exporter, source, exported, atol=check.atol, rtol=check.rtol, say=say)
        precision_info: dict[str, Any] = {}
        accuracy = None
        if source.single_graph:
            (only,) = exported.values()
            if request.precision != "fp32":
                say(f"making the {request.precision} variant")
                precision_info = steps.make_variant(
                    exporter, source, only, request.precision, calib_data=request.output.int8_calibration_data,
                    int8_samples=request.output.int8_calibration_samples, max_accuracy_drop=check.max_accuracy_drop,
                    max_rel_error=check.max_rel_error, held_out=held_out)
            if held_out is not None and not precision_info:  # a variant was measured against fp32 already
                say("measuring held-out accuracy")
            accuracy = steps.accuracy_record(exporter, source, only, held_out, bn_step, precision_info)
        validation.update({**({"precision": precision_info} if precision_info else {}),
                           **({"accuracy": accuracy} if accuracy else {})})
        extra = dict(source.extra)
        if source.data.generation is not None:
            extra["generation"] = dict(source.data.generation)
        if source.data.tokenizer is not None:
            extra["tokenizer"] = steps.copy_tokenizer(source, stage.path)
        latency, latency_note = _latency(exporter, source, exported, request, target,
                                         search["best"]["unit"] if search else None, say)
        if search:
            extra["search"] = _search_record(search, latency)
        coverage, kits = device_step(  # op coverage of the unit that runs it (--strict fails), and device build kits
            target, fmt, request.precision, {name: e.file for name, e in exported.items()},
            {name: e.artifact.inputs for name, e in exported.items()}, source.graph.trials[0] if source.single_graph else {},
            stage.path, unit=search["best"]["unit"] if search else request.search.unit, strict=check.strict, say=say,
            compression=extra.get("compression"), axis_ranges={name: e.graph.axis_ranges for name, e in exported.items()})
        validation.update({"op_coverage": coverage} if coverage else {})
        extra.update({"kits": kits} if kits else {})
        provenance = {**source.provenance, **next(iter(exported.values())).artifact.provenance}
        manifest = Manifest(
            target=target.name,
            format=fmt,
            precision=request.precision,
            graphs={name: Graph(e.file.name, e.artifact.inputs, e.artifact.outputs) for name, e in exported.items()},
            task=source.task,
            name=source.name,
            edgekit_version=edgekit.__version__,
            provenance=provenance,
            validation=validation,
            latency=tuple(latency),
            toolchain=toolchain_versions(fmt),
            extra=extra,
            example_sizes=source.graph.trials[0] if source.single_graph else {},
        )
        say("writing bundle")
        manifest = stage.commit(manifest)
    return ExportResult(Path(request.out), manifest, latency_note)
