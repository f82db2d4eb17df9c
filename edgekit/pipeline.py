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
from edgekit.exporters.onnx import OnnxExportOptions, export_onnx, validate
from edgekit.models.registry import ModelRequest, ModelSource, resolve_model
from edgekit.runtimes.bundle import BundleWriter, Graph, Manifest
from edgekit.runtimes.errors import UsageError

__all__ = ["ExportRequest", "ExportResult", "export_bundle", "resolve_target", "toolchain_versions"]

Progress = Callable[[str], None]

# Model families that export several graphs (encoder-decoder LMs) supply their own export step:
# a reference equal to a key, or starting with a key ending in ":", maps to "module:function" with the
# signature ``export_family(request, target, stage_dir: Path, progress) -> Manifest`` (files unset; the
# pipeline hashes them and swaps the bundle in atomically).
FAMILY_EXPORTERS: dict[str, str] = {
    "slm-encdec": "edgekit.models.slm.export:export_family",
    "slm-deconly": "edgekit.models.slm.export:export_family",
    "slm:": "edgekit.models.slm.export:export_family",
    "hf:": "edgekit.models.slm.export:export_family",
}


def _family_exporter(ref: str | None) -> Callable | None:
    if ref is None:
        return None
    key = next((k for k in FAMILY_EXPORTERS if ref == k or (k.endswith(":") and ref.startswith(k))), None)
    if key is None:
        return None
    import importlib

    module_name, _, function_name = FAMILY_EXPORTERS[key].partition(":")
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
    atol: float = 1e-4
    measure_runs: int = 50  # host latency measurement after export; 0 skips it
    threads: int = 1
    calib_samples: int = 64
    max_accuracy_drop: float = 0.05  # int8/fp16 refused above this drop of labelled accuracy
    max_rel_error: float = 0.25  # ... or, without labels, above this mean relative output error


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: Manifest


def resolve_target(name: str | None, target_file: Path | None):
    """Load a target by name/alias or from a user TOML file (exactly one of the two)."""
    from edgekit.targets import load_target, load_target_file

    if target_file is not None:
        if name not in (None, "host"):
            raise UsageError("pass either --target or --target-file, not both")
        return load_target_file(Path(target_file))
    return load_target(name or "host")


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
    import numpy as np

    from edgekit.exporters.onnx import random_feeds
    from edgekit.runtimes.ort import OrtSession
    from edgekit.targets.host import detect_host
    from edgekit.targets.measure import measure_latency

    session = OrtSession(path, threads=threads, inputs=source.inputs)
    feeds = random_feeds(source.inputs, {}, np.random.default_rng(0))
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


def _predict_on_target(path: Path, target, precision: str) -> dict[str, Any] | None:
    """The target's predicted latency on its default unit (calibrated or modeled), unless it is the host
    (measured instead) or the unit does not run this precision or has no published peak."""
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.targets.predictor import predict_model

    unit = target.unit(target.default_unit)
    if target.name == "host" or precision not in unit.precisions:
        return None
    prediction = predict_model(graph_stats(path).nodes, target, unit.name, precision)
    if prediction.ms is None:
        return None
    return {"source": prediction.source, "device": target.name, "unit": unit.name, "runtime": unit.runtime,
            "batch": 1, "ms": round(prediction.ms, 4), "notes": list(prediction.notes)}


def _calibration_samples(request: ExportRequest, source: ModelSource, n: int, seed: int) -> tuple[list[dict], str]:
    """Calibration feeds: the family's data (which honours ``--calib-data``), else the ``--calib-data``
    file, else random normal inputs (labelled as such in the manifest)."""
    import numpy as np

    from edgekit.exporters.onnx import random_feeds

    if source.calibration is not None:
        return source.calibration(n), f"{source.name} family data"
    if request.model.calib_data is not None:
        return _load_calib_file(Path(request.model.calib_data), source, n), f"--calib-data {request.model.calib_data}"
    rng = np.random.default_rng(seed)
    return [random_feeds(source.inputs, {}, rng) for _ in range(n)], "random normal inputs (no real data given)"


def _load_calib_file(path: Path, source: ModelSource, n: int) -> list[dict]:
    from edgekit.models.registry import load_samples

    if len(source.inputs) != 1:
        raise UsageError(f"--calib-data {path}: the model has {len(source.inputs)} inputs; one .npy fits one-input models")
    spec = source.inputs[0]
    data = load_samples(path, spec)
    return [{spec.name: data[i : i + 1]} for i in range(min(n, len(data)))]


def _make_variant(request: ExportRequest, source: ModelSource, artifact, out_path: Path) -> dict[str, Any]:
    """Write the fp16 or int8 file at ``out_path`` and measure what it changed against fp32."""
    from edgekit.exporters.accuracy import check_not_collapsed, compare_files
    from edgekit.exporters.quantize import convert_fp16, quantize_int8

    info: dict[str, Any] = {"precision": request.precision}
    if request.precision == "int8":
        calibration, calibration_data = _calibration_samples(request, source, request.calib_samples, seed=1)
        result = quantize_int8(artifact.path, out_path, calibration, artifact.inputs)
        info.update(result.to_json(), calibration=f"{len(calibration)} samples of {calibration_data}")
    else:
        convert_fp16(artifact.path, out_path)
    if source.evaluation is not None:
        samples, labels = source.evaluation()
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
    target = resolve_target(request.target, request.target_file)
    search: dict[str, Any] | None = None
    if request.budget_ms is not None:
        request, search = _apply_selection(request, target, say)
    elif request.precision is None:
        request = replace(request, precision="fp32")
    fmt = _choose_format(request, target)
    info = check_format(fmt, request.precision)
    family = _family_exporter(request.model.ref)
    if family is not None:
        with BundleWriter(request.out) as stage:
            manifest = family(request, target, stage.path, say)
            say("writing bundle")
            manifest = stage.commit(manifest)
        return ExportResult(Path(request.out), manifest)
    say(f"loading model {request.model.ref or 'default'}")
    source = resolve_model(request.model)
    options = OnnxExportOptions(
        opset=request.opset,
        dynamo=request.dynamo,
        metadata={"edgekit_version": edgekit.__version__, "target": target.name, "precision": request.precision},
    )
    with BundleWriter(request.out) as stage, tempfile.TemporaryDirectory(prefix="edgekit-export-") as work:
        file_name = f"model{info.suffix}"
        fp32_path = stage.path / file_name if request.precision == "fp32" else Path(work) / "fp32.onnx"
        say(f"exporting {source.name} to {fmt} (opset {request.opset})")
        artifact = export_onnx(
            source.module, source.inputs, source.example_inputs, fp32_path,
            output_names=source.output_names, options=options,
        )
        say("validating against torch")
        report = validate(artifact.path, source.module, artifact.inputs, atol=request.atol)
        precision_info: dict[str, Any] = {}
        if request.precision != "fp32":
            say(f"making the {request.precision} variant")
            precision_info = _make_variant(request, source, artifact, stage.path / file_name)
        latency: list[Mapping[str, Any]] = []
        if request.measure_runs > 0:
            say("measuring latency on this host")
            latency.append(_measure_on_host(stage.path / file_name, source, request.measure_runs, request.threads))
        predicted = _predict_on_target(artifact.path, target, request.precision)
        if predicted is not None:
            latency.append(predicted)
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
                        **({"precision": precision_info} if precision_info else {})},
            latency=tuple(latency),
            toolchain=toolchain_versions(),
            extra={**source.extra, **({"search": _search_record(search, latency)} if search else {})},
        )
        say("writing bundle")
        manifest = stage.commit(manifest)
    return ExportResult(Path(request.out), manifest)
