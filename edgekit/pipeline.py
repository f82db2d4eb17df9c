"""The export chain: resolve the model, export it, validate it, time it, and write the bundle.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "bundle"
    >>> result = export_bundle(ExportRequest(target="host", out=out, measure_runs=5))
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
from edgekit.exporters.formats import check_format
from edgekit.exporters.onnx import OnnxExportOptions, export_onnx, trial_sizes, validate
from edgekit.models.registry import ModelRequest, ModelSource, family_exporter_ref, resolve_model
from edgekit.runtimes.bundle import BundleWriter, Graph, Manifest
from edgekit.runtimes.errors import UsageError
from edgekit.targets import resolve_target  # torch-free: re-exported for callers of the pipeline

__all__ = ["ExportRequest", "ExportResult", "export_bundle", "resolve_target", "toolchain_versions"]

Progress = Callable[[str], None]

# Multi-graph families (FAMILY_EXPORTERS) are listed with the other model references in models.registry.


def _family_exporter(ref: str | None) -> Callable | None:
    target = family_exporter_ref(ref)
    if target is None:
        return None
    import importlib

    module_name, _, function_name = target.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


@dataclass(frozen=True)
class ExportRequest:
    """Everything ``edgekit export`` needs; defaults export the built-in model as fp32 ONNX."""

    out: Path
    model: ModelRequest = field(default_factory=ModelRequest)
    target: str | None = "host"
    target_file: Path | None = None
    format: str | None = None  # None: the first format edgekit can write that the target runs
    precision: str | None = None  # None: fp32, or chosen by the search when budget_ms is set
    budget_ms: float | None = None  # select subnet x precision under this latency budget first
    memory_mb: float | None = None
    unit: str | None = None
    search_seed: int = 0
    opset: int = 17
    dynamo: bool = False
    atol: float = 1e-4  # parity criterion: |onnx - torch| <= atol + rtol * |torch|, element-wise
    rtol: float = 1e-3
    measure_runs: int = 50  # host latency measurement after export; 0 skips it
    threads: int = 1
    calib_samples: int = 64
    max_accuracy_drop: float = 0.05  # --bn-data or int8/fp16 refused above this drop of held-out accuracy
    max_rel_error: float = 0.25  # ... or, without labels, above this mean relative output error
    force: bool = False  # replace an existing --out that is not an edgekit bundle


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: Manifest
    latency_note: str | None = None  # why the manifest has no latency on the target, when it has none


def toolchain_versions() -> dict[str, str]:
    """Versions of the packages that shaped an artifact (those installed)."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "edgekit": edgekit.__version__}
    for package in ("torch", "onnx", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _choose_format(request: ExportRequest, target) -> str:
    from edgekit.exporters.formats import FORMATS

    if request.format is not None:
        if request.format not in target.formats:
            raise UsageError(f"--format {request.format}: target {target.name} runs {sorted(target.formats)}")
        return request.format
    for name, info in FORMATS.items():
        if info.available and name in target.formats:
            return name
    raise UsageError(
        f"target {target.name} runs {sorted(target.formats)}; edgekit can write "
        f"{[n for n, i in FORMATS.items() if i.available]} so far"
    )


def _measure_on_host(path: Path, source: ModelSource, runs: int, threads: int) -> dict[str, Any]:
    from edgekit.runtimes.spec import random_inputs
    from edgekit.runtimes.ort import OrtSession
    from edgekit.targets.host import detect_host
    from edgekit.targets.measure import measure_latency

    session = OrtSession(path, threads=threads, inputs=source.inputs)
    feeds = random_inputs(source.inputs, trial_sizes(source.inputs, source.example_inputs)[0], int_high=100)
    stats = measure_latency(session, feeds, warmup=max(3, runs // 5), runs=runs)
    return {
        "source": "measured",
        "device": "host",
        "cpu": detect_host().cpu_model,
        "runtime": "onnxruntime",
        "threads": threads,
        "batch": 1,
        "ms": round(stats.p50_ms, 4),
        "p90_ms": round(stats.p90_ms, 4),
        "runs": stats.runs,
    }


def _predict_on_target(path: Path, target, fmt: str, precision: str,
                       unit: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Predicted latency (calibrated or modeled) of the bundle's file on the target's units that can run
    it: those whose formats include ``fmt`` at ``precision`` (only ``unit`` when the search chose one),
    default unit first; plus, when there is none, why not in a few words. The host is measured instead.
    """
    from edgekit.exporters.formats import FORMATS
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.targets.predictor import predict_model

    if target.name == "host":
        return [], None
    candidates = [target.unit(unit)] if unit else sorted(target.units, key=lambda u: u.name != target.default_unit)
    runs_it = [u for u in candidates if fmt in u.formats and precision in u.precisions]
    if not runs_it:
        return [], f"no unit runs {fmt} {precision} ({_what_units_run(candidates, fmt)})"
    nodes = graph_stats(path).nodes
    entries, unknown = [], []
    for u in runs_it:
        prediction = predict_model(nodes, target, u.name, precision)
        if prediction.ms is None:
            unknown.append(f"{u.name}: {'; '.join(prediction.notes) or 'no published peak'}")
            continue
        entries.append({"source": prediction.source, "device": target.name, "unit": u.name,
                        "runtime": FORMATS[fmt].runtime, "precision": precision, "batch": 1,
                        "ms": round(prediction.ms, 4), "notes": list(prediction.notes)})
    return entries, (None if entries else "; ".join(unknown))


def _what_units_run(units, fmt: str) -> str:
    """``gpu runs tensorrt; cpu runs onnx at fp32, int8``: what each unit runs, for a one-line reason."""
    return "; ".join(f"{u.name} runs {fmt} at {', '.join(u.precisions)}" if fmt in u.formats
                     else f"{u.name} runs {', '.join(u.formats)}" for u in units)


def _calibration_samples(request: ExportRequest, source: ModelSource, n: int, seed: int) -> tuple[list[dict], str]:
    """int8 calibration feeds: the ``--calib-data`` file, else the family's data, else random normal
    inputs (labelled as such in the manifest). BatchNorm never sees these (that is ``--bn-data``)."""
    import numpy as np

    from edgekit.runtimes.spec import random_inputs

    if request.model.calib_data is not None:
        return _load_calib_file(Path(request.model.calib_data), source, n), f"--calib-data {request.model.calib_data}"
    if source.calibration is not None:
        return source.calibration(n), f"{source.name} family data"
    rng = np.random.default_rng(seed)
    sizes = trial_sizes(source.inputs, source.example_inputs)[0]
    return [random_inputs(source.inputs, sizes, rng=rng, int_high=100) for _ in range(n)], "random normal inputs (no real data given)"


def _load_calib_file(path: Path, source: ModelSource, n: int) -> list[dict]:
    from edgekit.models.registry import load_samples

    if len(source.inputs) != 1:
        raise UsageError(f"--calib-data {path}: the model has {len(source.inputs)} inputs; one .npy fits one-input models")
    spec = source.inputs[0]
    data = load_samples(path, spec)
    return [{spec.name: data[i : i + 1]} for i in range(min(n, len(data)))]


def _check_data_options(request: ExportRequest, multi_graph: bool) -> None:
    """``--calib-data`` feeds int8 calibration only; ``--bn-data`` needs a model that recalibrates BatchNorm."""
    calib, bn_data = request.model.calib_data, request.model.bn_data
    if calib is not None and request.precision != "int8" and request.budget_ms is None:
        raise UsageError(f"--calib-data {calib}: calibrates int8 only and --precision is {request.precision}; "
                         "BatchNorm recalibration images go to --bn-data")
    if bn_data is not None and multi_graph:
        raise UsageError(f"--bn-data {bn_data}: {request.model.ref} has no BatchNorm recalibration step")


def _torch_top1(module, inputs, held_out: tuple[list[dict], Any]) -> float:
    import numpy as np
    import torch

    from edgekit.exporters.accuracy import top1

    samples, labels = held_out
    outputs = []
    with torch.no_grad():
        for feed in samples:
            result = module(*[torch.from_numpy(np.asarray(feed[spec.name])) for spec in inputs])
            outputs.append({"output": (result[0] if isinstance(result, (tuple, list)) else result).float().numpy()})
    return top1(outputs, labels)


def _bn_data_step(request: ExportRequest, source: ModelSource, held_out, say: Progress):
    """BatchNorm recalibrated on ``--bn-data``, measured on held-out labels against the reference: the same
    model resolved without ``--bn-data`` (BatchNorm on the family's own data, or not recalibrated);
    refused above ``max_accuracy_drop``. Returns the AccuracyStep, or None when there is nothing to measure."""
    from edgekit.exporters.accuracy import AccuracyStep

    bn_data = request.model.bn_data
    if bn_data is None:
        return None
    if "bn_recalibration" not in source.extra:  # the families that recalibrate BatchNorm say so there
        raise UsageError(f"--bn-data {bn_data}: {source.name} has no BatchNorm recalibration step (ofa-mbv3 has); "
                         "int8 calibration samples go to --calib-data")
    if held_out is None:
        return None
    say("measuring held-out accuracy of the --bn-data BatchNorm recalibration")
    baseline = resolve_model(replace(request.model, bn_data=None))
    step = AccuracyStep(
        "bn_recalibration", f"BatchNorm recalibration on --bn-data {bn_data}",
        before=_torch_top1(baseline.module, baseline.inputs, held_out),
        after=_torch_top1(source.module, source.inputs, held_out),
        samples=len(held_out[1]), baseline=f"BatchNorm recalibrated on {baseline.extra['bn_recalibration']}",
    )
    step.check(request.max_accuracy_drop)
    return step


def _accuracy_record(source: ModelSource, artifact, held_out, bn_step, precision_info: Mapping[str, Any]):
    """Held-out top-1 of each step and of the exported file, each with its sample count (None without labels)."""
    from edgekit.exporters.accuracy import run_file, top1

    if held_out is None:
        return None
    samples, labels = held_out
    if precision_info:
        exported = precision_info["vs_fp32"]["accuracy"]
    else:
        exported = top1(run_file(artifact.path, artifact.inputs, samples), labels)
    return {"metric": "top-1", "data": f"held-out {source.name}", "steps": [bn_step.to_json()] if bn_step else [],
            "exported": {"top1": exported, "samples": len(labels), "runtime": "onnxruntime"}}


def _make_variant(request: ExportRequest, source: ModelSource, artifact, out_path: Path, held_out) -> dict[str, Any]:
    """Write the fp16 or int8 file at ``out_path`` and measure what it changed against fp32 (on the held-out
    labelled data when the family has some)."""
    from edgekit.exporters.accuracy import check_not_collapsed, compare_files
    from edgekit.exporters.quantize import convert_fp16, quantize_int8

    info: dict[str, Any] = {"precision": request.precision}
    if request.precision == "int8":
        calibration, calibration_data = _calibration_samples(request, source, request.calib_samples, seed=1)
        result = quantize_int8(artifact.path, out_path, calibration, artifact.inputs)
        info.update(result.to_json(), calibration=f"{len(calibration)} samples of {calibration_data}")
    else:
        convert_fp16(artifact.path, out_path)
    if held_out is not None:
        samples, labels = held_out
        data = f"held-out {source.name}"
    else:
        samples, data = _calibration_samples(request, source, 32, seed=2)
        labels = None
    report = compare_files(artifact.path, out_path, artifact.inputs, samples, labels, data)
    check_not_collapsed(report, request.precision, max_accuracy_drop=request.max_accuracy_drop,
                        max_rel_error=request.max_rel_error)
    info["vs_fp32"] = report.to_json()
    return info


def _search_record(search: dict[str, Any], latency: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The search's choice and, when it was measured here, whether the budget held."""
    record = dict(search)
    measured = next((item for item in latency if item.get("device") == "host"), None)
    if search["target"] == "host" and measured is not None:
        record["measured_ms"] = measured["ms"]
        record["budget_held"] = measured["ms"] <= search["budget_ms"]
    return record


def _apply_selection(request: ExportRequest, target, say: Progress) -> tuple[ExportRequest, dict[str, Any]]:
    """Choose subnet x precision under ``budget_ms`` among formats edgekit can write; fix them in the request."""
    from edgekit.search.run import run_selection, selection_json

    if request.model.ref not in (None, "ofa-mbv3"):
        raise UsageError(f"--budget-ms selects among subnets of a searchable family (ofa-mbv3), not {request.model.ref!r}")
    if request.model.subnet is not None:
        raise UsageError("pass --subnet or --budget-ms, not both")
    say(f"searching for the best subnet under {request.budget_ms:g} ms on {target.name}")
    threads = request.threads if target.name == "host" else None
    family, selection = run_selection(
        "ofa-mbv3", target, request.budget_ms, memory_mb=request.memory_mb, unit=request.unit,
        precision=request.precision or "auto", seed=request.search_seed, threads=threads, writable_only=True,
    )
    data = selection_json(family, target, selection)
    best = data["best"]
    data["pareto"] = data["pareto"][:: max(1, len(data["pareto"]) // 20)]  # keep the manifest small
    chosen = replace(request.model, ref="ofa-mbv3", subnet=selection.result.best.config.to_json())
    return replace(request, model=chosen, precision=best["precision"], format=best["format"]), data


def export_bundle(request: ExportRequest, progress: Progress | None = None) -> ExportResult:
    """Run the whole chain and return the written bundle; nothing is written unless validation passes."""
    say = progress or (lambda message: None)
    BundleWriter(request.out, force=request.force).check_destination()  # refuse a non-bundle --out before any work
    target = resolve_target(request.target, request.target_file)
    search: dict[str, Any] | None = None
    if request.budget_ms is not None:
        request, search = _apply_selection(request, target, say)
    elif request.precision is None:
        request = replace(request, precision="fp32")
    fmt = _choose_format(request, target)
    info = check_format(fmt, request.precision)
    family = _family_exporter(request.model.ref)
    _check_data_options(request, multi_graph=family is not None)
    if family is not None:
        with BundleWriter(request.out, force=request.force) as stage:
            manifest = family(request, target, stage.path, say)
            say("writing bundle")
            manifest = stage.commit(manifest)
        return ExportResult(Path(request.out), manifest)
    say(f"loading model {request.model.ref or 'default'}")
    source = resolve_model(request.model)
    held_out = source.evaluation() if source.evaluation is not None else None
    bn_step = _bn_data_step(request, source, held_out, say)
    options = OnnxExportOptions(
        opset=request.opset,
        dynamo=request.dynamo,
        metadata={"edgekit_version": edgekit.__version__, "target": target.name, "precision": request.precision},
    )
    with BundleWriter(request.out, force=request.force) as stage, tempfile.TemporaryDirectory(prefix="edgekit-export-") as work:
        file_name = f"model{info.suffix}"
        fp32_path = stage.path / file_name if request.precision == "fp32" else Path(work) / "fp32.onnx"
        say(f"exporting {source.name} to {fmt} (opset {request.opset})")
        artifact = export_onnx(
            source.module, source.inputs, source.example_inputs, fp32_path,
            output_names=source.output_names, options=options,
        )
        say("validating against torch")
        report = validate(artifact.path, source.module, artifact.inputs, atol=request.atol, rtol=request.rtol,
                          sizes=trial_sizes(source.inputs, source.example_inputs))
        precision_info: dict[str, Any] = {}
        if request.precision != "fp32":
            say(f"making the {request.precision} variant")
            precision_info = _make_variant(request, source, artifact, stage.path / file_name, held_out)
        if held_out is not None and not precision_info:  # a variant was measured against fp32 already
            say("measuring held-out accuracy")
        accuracy = _accuracy_record(source, artifact, held_out, bn_step, precision_info)
        latency: list[Mapping[str, Any]] = []
        if request.measure_runs > 0:
            say("measuring latency on this host")
            latency.append(_measure_on_host(stage.path / file_name, source, request.measure_runs, request.threads))
        predicted, latency_note = _predict_on_target(artifact.path, target, fmt, request.precision,
                                                     unit=search["best"]["unit"] if search else None)
        latency.extend(predicted)
        manifest = Manifest(
            target=target.name,
            format=fmt,
            precision=request.precision,
            graphs={"model": Graph(file_name, artifact.inputs, artifact.outputs)},
            task=source.task,
            name=source.name,
            edgekit_version=edgekit.__version__,
            provenance={**source.provenance, "exporter": "torch.onnx (dynamo)" if request.dynamo else "torch.onnx (TorchScript)", "opset": artifact.opset},
            validation={"runtime": "onnxruntime", "of": "fp32 export vs torch", **report.to_json(),
                        **({"precision": precision_info} if precision_info else {}),
                        **({"accuracy": accuracy} if accuracy else {})},
            latency=tuple(latency),
            toolchain=toolchain_versions(),
            extra={**source.extra, **({"search": _search_record(search, latency)} if search else {})},
            example_sizes=trial_sizes(source.inputs, source.example_inputs)[0],
        )
        say("writing bundle")
        manifest = stage.commit(manifest)
    return ExportResult(Path(request.out), manifest, latency_note)
