"""The steps of the export chain, each through the format's exporter and runtime backend, for any family:
export and validate every graph, run the family's chained check, write a precision variant and measure
what it changed, measure held-out accuracy and the BatchNorm step, and time the file on this host.

:mod:`edgekit.pipeline` runs them in order and writes the bundle; none of them names a format's tools.

Example:
    >>> from edgekit.models.registry import ModelRequest, resolve_model
    >>> source = resolve_model(ModelRequest("tests.fixtures.tiny_models:tiny_cnn"))   # doctest: +SKIP
    >>> data_feeds(None, source, 4, seed=0)[1]                                           # doctest: +SKIP
    'random normal inputs (no real data given)'
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgekit.exporters.base import Artifact, ExportGraph, ExportOptions, Exporter
from edgekit.exporters.parity import ValidationReport
from edgekit.models.registry import ModelRequest, ModelSource, resolve_model
from edgekit.runtimes.errors import UsageError, ValidationError
from edgekit.runtimes.spec import random_inputs

__all__ = ["Exported", "export_graphs", "validation_record", "data_feeds", "bn_data_step", "make_variant",
           "accuracy_record", "measure_on_host", "copy_tokenizer"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Exported:
    """One exported graph: its fp32 artifact, the bundle file it ends up as, and its parity report."""

    graph: ExportGraph
    artifact: Artifact
    file: Path
    report: ValidationReport


def export_graphs(exporter: Exporter, source: ModelSource, options: ExportOptions, *, atol: float, rtol: float,
                  stage: Path, work: Path, precision: str, say: Progress) -> dict[str, Exported]:
    """Export every graph of ``source`` and check each against torch; the fp32 files go to the bundle's
    ``stage`` directory, or to ``work`` when a precision variant will take their place."""
    suffix = exporter.record.suffix
    described = exporter.describe(options)
    exported: dict[str, Exported] = {}
    for name, graph in source.graphs.items():
        file = stage / f"{name}{suffix}"
        fp32 = file if precision == "fp32" else work / f"{name}.fp32{suffix}"
        what = source.name if source.single_graph else f"{source.name} {name}"
        say(f"exporting {what} to {exporter.format}" + (f" ({described})" if described else ""))
        artifact = exporter.export(graph, fp32, options)
        dropped = [s.name for s in graph.inputs if s.name not in {a.name for a in artifact.inputs}]
        if graph.keep_inputs and dropped:
            raise ValidationError(f"{source.name}: the {name} graph lost inputs {dropped} in export")
        say("validating against torch" if source.single_graph else f"validating the {name} graph against torch")
        exported[name] = Exported(graph, artifact, file, exporter.validate(artifact, graph, atol=atol, rtol=rtol))
    return exported


def validation_record(exporter: Exporter, source: ModelSource, exported: Mapping[str, Exported], *, atol: float,
                      rtol: float, say: Progress) -> dict[str, Any]:
    """The manifest's validation: one parity report for a single-graph model; for a model of several graphs,
    one per graph and the family's chained check (run on the files in the format's runtime)."""
    runtime = exporter.record.runtime
    if source.single_graph:
        (only,) = exported.values()
        return {"runtime": runtime, "of": "fp32 export vs torch", **only.report.to_json()}
    record: dict[str, Any] = {"runtime": runtime, "passed": True,
                              "graphs": {name: e.report.to_json() for name, e in exported.items()}}
    if source.chained_check is not None:
        say("checking the chained graphs against the source model")
        record["chained_vs_source"] = dict(source.chained_check(
            lambda name: exporter.validation_session(exported[name].file, exported[name].artifact.inputs,
                                                     outputs=exported[name].artifact.outputs), atol, rtol))
    record["max_abs_error"] = {name: e.report.worst_abs for name, e in exported.items()}
    record["atol"], record["rtol"] = atol, rtol
    return record


def data_feeds(calib_data: Path | None, source: ModelSource, n: int, seed: int) -> tuple[list[dict], str]:
    """Samples of real inputs and what they are: the ``--calib-data`` file, else the family's int8
    calibration data, else random normal inputs (said so). They calibrate int8, and compare a variant with
    fp32 when there are no labels; BatchNorm never sees them (that is ``--bn-data``)."""
    from edgekit.models.source import load_samples

    graph = source.graph
    if calib_data is not None:
        if len(graph.inputs) != 1:
            raise UsageError(f"--calib-data {calib_data}: the model has {len(graph.inputs)} inputs; one .npy fits "
                             "one-input models")
        spec = graph.inputs[0]
        data = load_samples(Path(calib_data), spec)
        return [{spec.name: data[i : i + 1]} for i in range(min(n, len(data)))], f"--calib-data {calib_data}"
    if source.data.int8_calibration is not None:
        return source.data.int8_calibration(n), f"{source.name} family data"
    rng = np.random.default_rng(seed)
    feeds = [random_inputs(graph.inputs, graph.trials[0], rng=rng, int_high=100) for _ in range(n)]
    return feeds, "random normal inputs (no real data given)"


def _metric(source: ModelSource):
    """(name, function) of the family's held-out score, None for top-1: a segmenter is scored by mIoU."""
    if source.task != "segmentation":
        return None
    from edgekit.models.seg.metrics import miou_of_outputs

    num_classes = source.extra.get("num_classes")
    return "mIoU", lambda outputs, labels: miou_of_outputs(outputs, labels, num_classes)


def _torch_top1(source: ModelSource, held_out: tuple[list[dict], Any]) -> float:
    import torch

    from edgekit.exporters.accuracy import top1

    samples, labels = held_out
    outputs = []
    with torch.no_grad():
        for feed in samples:
            result = source.module(*[torch.from_numpy(np.asarray(feed[spec.name])) for spec in source.inputs])
            outputs.append({"output": (result[0] if isinstance(result, (tuple, list)) else result).float().numpy()})
    return top1(outputs, labels)


def bn_data_step(model: ModelRequest, source: ModelSource, held_out, max_drop: float, say: Progress):
    """BatchNorm recalibrated on ``--bn-data``, measured on held-out labels against the reference: the same
    model resolved without ``--bn-data`` (BatchNorm on the family's own data, or not recalibrated);
    refused above ``max_drop``. Returns the AccuracyStep, or None when there is nothing to measure."""
    from edgekit.exporters.accuracy import AccuracyStep

    if model.bn_data is None or held_out is None:
        return None
    say("measuring held-out accuracy of the --bn-data BatchNorm recalibration")
    baseline = resolve_model(replace(model, bn_data=None))
    step = AccuracyStep(
        "bn_recalibration", f"BatchNorm recalibration on --bn-data {model.bn_data}",
        before=_torch_top1(baseline, held_out), after=_torch_top1(source, held_out),
        samples=len(held_out[1]), baseline=f"BatchNorm recalibrated on {baseline.extra['bn_recalibration']}",
    )
    step.check(max_drop)
    return step


def _run_samples(exporter: Exporter, path: Path, inputs, samples) -> list[dict]:
    """Outputs of the file at ``path`` on each feed of ``samples``, in its format's runtime (1 thread)."""
    session = exporter.validation_session(path, inputs, threads=1)
    return [session.run(dict(feed)) for feed in samples]


def make_variant(exporter: Exporter, source: ModelSource, exported: Exported, precision: str, *,
                 calib_data: Path | None, int8_samples: int, max_accuracy_drop: float, max_rel_error: float,
                 held_out) -> dict[str, Any]:
    """Write the fp16 or int8 file of the fp32 export and measure what it changed against fp32 (on the
    held-out labelled data when the family has some); refused when it collapses."""
    from edgekit.exporters.accuracy import check_not_collapsed, compare_outputs

    fp32, inputs = exported.artifact.path, exported.artifact.inputs
    info: dict[str, Any] = {"precision": precision}
    if precision == "int8":
        int8_calibration, data_name = data_feeds(calib_data, source, int8_samples, seed=1)
        if calib_data is None and source.data.int8_calibration is None and getattr(exporter, "needs_int8_data", False):
            raise UsageError(f"--precision int8: {source.name} has no int8 calibration data of its own and "
                             f"{exporter.format} int8 is calibrated on real samples only: pass --calib-data FILE.npy")
        info.update(exporter.write_variant(fp32, exported.file, "int8", inputs, int8_calibration),
                    calibration=f"{len(int8_calibration)} samples of {data_name}")
    else:
        info.update(exporter.write_variant(fp32, exported.file, precision, inputs))
    if held_out is not None:
        (samples, labels), data = held_out, f"held-out {source.name}"
    else:
        (samples, data), labels = data_feeds(calib_data, source, 32, seed=2), None
    report = compare_outputs(_run_samples(exporter, fp32, inputs, samples),
                             _run_samples(exporter, exported.file, inputs, samples), labels, data, _metric(source))
    check_not_collapsed(report, precision, max_accuracy_drop=max_accuracy_drop, max_rel_error=max_rel_error)
    info["vs_fp32"] = report.to_json()
    return info


def accuracy_record(exporter: Exporter, source: ModelSource, exported: Exported, held_out, bn_step,
                    precision_info: Mapping[str, Any]) -> dict[str, Any] | None:
    """Held-out top-1 (a segmenter's mIoU, key ``miou``) of each step and of the exported file, each with its
    sample count (None without labels)."""
    from edgekit.exporters.accuracy import top1

    if held_out is None:
        return None
    samples, labels = held_out
    name, score = _metric(source) or ("top-1", top1)
    if precision_info:
        top = precision_info["vs_fp32"]["accuracy"]
    else:
        top = score(_run_samples(exporter, exported.file, exported.artifact.inputs, samples), labels)
    key = "miou" if name == "mIoU" else "top1"
    return {"metric": name, "data": f"held-out {source.name}", "steps": [bn_step.to_json()] if bn_step else [],
            "exported": {key: top, "samples": len(labels), "runtime": exporter.record.runtime}}


def timed_graph(source: ModelSource) -> str:
    """The graph the host timing and the target prediction are of: the family's choice, else the only one."""
    return source.timing.graph if source.timing is not None else source.graph.name


def measure_on_host(exporter: Exporter, source: ModelSource, exported: Mapping[str, Exported], runs: int,
                    threads: int, precision: str | None = None) -> dict[str, Any]:
    """p50/p90 of the bundle's file in its format's runtime backend on this host: the model at its example
    sizes, or what the family says to time (``ModelSource.timing``, recorded as ``graph`` and ``what``)."""
    from edgekit.runtimes import load_file
    from edgekit.targets.estimate import LatencyEstimate
    from edgekit.targets.host import detect_host
    from edgekit.targets.measure import measure_latency

    timed = exported[timed_graph(source)]
    inputs = timed.artifact.inputs
    if source.timing is None:
        feeds, what = random_inputs(inputs, timed.graph.trials[0], int_high=100), {}
    else:
        feeds, what = dict(source.timing.feeds), {"graph": source.timing.graph, "what": source.timing.what}
    session = load_file(timed.file, exporter.format, threads=threads, inputs=inputs)
    stats = measure_latency(session, feeds, warmup=max(3, runs // 5), runs=runs)
    measured = LatencyEstimate(stats.p50_ms, "measured", "host", "cpu", precision, exporter.record.runtime, exporter.format,
                               threads, 1, p90_ms=stats.p90_ms, runs=stats.runs,
                               details={"cpu": detect_host().cpu_model, **what})
    return measured.rounded().to_json()


def predict_on_target(exporter: Exporter, file: Path, target, precision: str,
                      unit: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The target's latency for ``file`` on each unit that runs its format at ``precision`` (only ``unit``
    when the search chose one), from the one chooser (a measurement of this very file in the latency store >
    calibrated > modeled), as manifest entries; plus, when no unit runs it, why not. The host is measured
    by :func:`measure_on_host` instead.
    """
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.runtimes.bundle import sha256_file
    from edgekit.targets.estimate import estimate_for_format

    if target.name == "host":
        return [], None
    stats = getattr(exporter, "graph_stats", graph_stats)  # a format whose files are not ONNX reads its own
    entries, note = estimate_for_format(target, exporter.format, precision, ops=stats(file).nodes,
                                        runtime=exporter.record.runtime, model_sha256=sha256_file(file), unit=unit,
                                        fallback=_fallbacks(file, target, exporter.format, precision, unit))
    return [entry.to_json() for entry in entries], note


def _fallbacks(file: Path, target, fmt: str, precision: str, unit: str | None) -> dict[str, tuple[str, frozenset[str]]]:
    """Per unit that runs the file and has an op table: (the unit its unsupported nodes fall back to, their names)."""
    from edgekit.exporters.coverage import coverage_of_file
    from edgekit.targets.estimate import units_for_format

    units = [u for u in units_for_format(target, fmt, precision, unit) if u.ops is not None and u.ops.fallback]
    if not units:
        return {}
    reports = coverage_of_file(file, target, [u.name for u in units])
    return {u.name: (u.ops.fallback, frozenset(n.name for n in r.nodes if n.action != "fails the build"))
            for u, r in zip(units, reports) if r.nodes}


def copy_tokenizer(source: ModelSource, stage: Path) -> dict[str, Any]:
    """The family's tokenizer files copied to ``stage/tokenizer/``, and the manifest's ``tokenizer`` entry."""
    tokenizer = source.data.tokenizer
    assert tokenizer is not None
    files = []
    for file in tokenizer.source_files:
        (stage / "tokenizer").mkdir(exist_ok=True)
        shutil.copyfile(file, stage / "tokenizer" / file.name)
        files.append(f"tokenizer/{file.name}")
    framing = {key: list(value) for key, value in (("prefix", tokenizer.prefix), ("suffix", tokenizer.suffix))
               if value is not None}
    return {"kind": tokenizer.kind, "files": files, **framing}
