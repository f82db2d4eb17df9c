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
FAMILY_EXPORTERS: dict[str, str] = {}


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
    precision: str = "fp32"
    opset: int = 17
    dynamo: bool = False
    atol: float = 1e-4
    measure_runs: int = 50  # host latency measurement after export; 0 skips it
    threads: int = 1


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
    from edgekit.targets.measure import measure_latency

    session = OrtSession(path, threads=threads, inputs=source.inputs)
    feeds = random_feeds(source.inputs, {}, np.random.default_rng(0))
    stats = measure_latency(session, feeds, warmup=max(3, runs // 5), runs=runs)
    return {
        "source": "measured",
        "device": "host",
        "cpu": platform.processor() or platform.machine(),
        "runtime": "onnxruntime",
        "threads": threads,
        "batch": 1,
        "ms": round(stats.p50_ms, 4),
        "p90_ms": round(stats.p90_ms, 4),
        "runs": stats.runs,
    }


def export_bundle(request: ExportRequest, progress: Progress | None = None) -> ExportResult:
    """Run the whole chain and return the written bundle; nothing is written unless validation passes."""
    say = progress or (lambda message: None)
    target = resolve_target(request.target, request.target_file)
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
    with BundleWriter(request.out) as stage:
        file_name = f"model{info.suffix}"
        say(f"exporting {source.name} to {fmt} (opset {request.opset})")
        artifact = export_onnx(
            source.module, source.inputs, source.example_inputs, stage.path / file_name,
            output_names=source.output_names, options=options,
        )
        say("validating against torch")
        report = validate(artifact.path, source.module, artifact.inputs, atol=request.atol)
        latency: list[Mapping[str, Any]] = []
        if request.measure_runs > 0:
            say("measuring latency on this host")
            latency.append(_measure_on_host(artifact.path, source, request.measure_runs, request.threads))
        manifest = Manifest(
            target=target.name,
            format=fmt,
            precision=request.precision,
            graphs={"model": Graph(file_name, artifact.inputs, artifact.outputs)},
            task=source.task,
            name=source.name,
            edgekit_version=edgekit.__version__,
            provenance={**source.provenance, "exporter": "torch.onnx (dynamo)" if request.dynamo else "torch.onnx (TorchScript)", "opset": artifact.opset},
            validation={"runtime": "onnxruntime", **report.to_json()},
            latency=tuple(latency),
            toolchain=toolchain_versions(),
            extra=dict(source.extra),
        )
        say("writing bundle")
        manifest = stage.commit(manifest)
    return ExportResult(Path(request.out), manifest)
