"""``edgekit export``: model -> validated bundle for a target."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional

import typer

from .common import emit, human_bytes, number_range, out, progress, table

__all__ = ["register"]


def export_command(
    target: str = typer.Option("host", "--target", "-t", help="Target name or alias (edgekit targets list)."),
    target_file: Optional[Path] = typer.Option(None, "--target-file", help="Your own target profile (TOML)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Built-in name (ofa-mbv3, slm-encdec, hf:DIR, ...), package.module:factory, path/to/file.py:factory, or a .pt2 file."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="Example input shape, e.g. 1,3,224,224; several inputs: NAME=SHAPE, once per input."),
    input_names: Optional[str] = typer.Option(None, "--input-names", help="Input names, e.g. image,mask (default: forward's argument names)."),
    output_names: Optional[str] = typer.Option(None, "--output-names", help="Output names, e.g. logits,embedding (default: the model's dict keys)."),
    dynamic: Optional[str] = typer.Option(None, "--dynamic", help="hw: dynamic height and width (the last two axes of image inputs); batch is always dynamic."),
    trust_model_file: bool = typer.Option(False, "--trust-model-file", help="Load a .pt2 even if it holds pickles, which can run code: only for files you trust."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="ofa-mbv3: supernet weights (once-for-all or edgekit)."),
    subnet: Optional[str] = typer.Option(None, "--subnet", help='ofa-mbv3: subnet as JSON {"ks", "e", "d", "r"}.'),
    subnet_file: Optional[Path] = typer.Option(None, "--subnet-file", help="ofa-mbv3: subnet config JSON file."),
    space: Optional[str] = typer.Option(None, "--space", help="ofa-mbv3: search space (default: from the checkpoint)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="onnx | tflite | tensorrt, or all: every format the target runs, in one bundle (default: the target's first)."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32 | fp16 | int8 (default fp32; with --budget-ms: chosen)."),
    budget_ms: Optional[float] = typer.Option(None, "--budget-ms", help="ofa-mbv3: select the best subnet x precision under this latency."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="With --budget-ms: memory budget (default: the device's)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="With --budget-ms: restrict to one compute unit."),
    seed: int = typer.Option(0, "--seed", help="With --budget-ms: seed of the search."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (the dynamo exporter needs >= 18)."),
    dynamo: bool = typer.Option(False, "--dynamo", help="Use the torch.export-based ONNX exporter."),
    atol: float = typer.Option(1e-4, "--atol", callback=number_range(0), help="Parity: |onnx - torch| <= atol + rtol x |torch| per element."),
    rtol: float = typer.Option(1e-3, "--rtol", callback=number_range(0), help="Parity: relative part of the criterion (see --atol)."),
    bn_data: Optional[Path] = typer.Option(None, "--bn-data", help="ofa-mbv3: BatchNorm recalibration images, .npy (N, C, H, W) (default: the family's data)."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="int8 calibration samples only: .npy shaped (N, ...)."),
    calib_samples: int = typer.Option(64, "--calib-samples", help="How many calibration samples to use."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="With --budget-ms, any model: labelled .npz (inputs, labels); the candidate chosen by measured accuracy is exported."),
    metric: Optional[str] = typer.Option(None, "--metric", help="With --eval-data: top1 | miou | mse | module:function (default: miou for a segmenter, else top1)."),
    levels: Optional[str] = typer.Option(None, "--levels", help="With --eval-data: compression levels (fractions of MACs removed), e.g. 0.3,0.5."),
    layout: str = typer.Option("nchw", "--layout", help="nhwc: image inputs channels-last (N, H, W, C), transposed to the model's NCHW inside the graph."),
    max_accuracy_drop: float = typer.Option(0.05, "--max-accuracy-drop", callback=number_range(0, 1), help="Refuse --bn-data or int8/fp16 losing more held-out accuracy (0.05 = 5 points)."),
    min_agreement: float = typer.Option(0.99, "--min-agreement", help="Language models: refuse an int8/fp16 decoder below this greedy token agreement with fp32 (0.99 = 99%)."),
    bench_runs: int = typer.Option(50, "--bench-runs", help="Timed runs on this host after export (0 skips)."),
    strict: bool = typer.Option(False, "--strict", help="Fail when the target's unit cannot run some nodes (op coverage; default: warn)."),
    out_dir: Path = typer.Option(Path("edgekit-bundle"), "--out", "-o", help="Bundle directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if it is not an edgekit bundle (its files are lost)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Export a model to a validated bundle (default: the built-in model, fp32 ONNX)."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, SearchConfig, ValidationConfig, export_bundle

    shape, io_options = _io_options(input_shape or [], input_names, output_names, dynamic, trust_model_file)
    request = ExportRequest(
        out=out_dir,
        model=ModelRequest(model, shape, checkpoint=checkpoint, **io_options,
                           subnet=_one_subnet(subnet, subnet_file), space=space, bn_data=bn_data),
        target=target,
        target_file=target_file,
        output=OutputConfig(format=fmt, precision=precision, opset=opset, dynamo=dynamo,
                            int8_calibration_data=calib_data, int8_calibration_samples=calib_samples, layout=layout),
        search=SearchConfig(budget_ms=budget_ms, memory_mb=memory_mb, unit=unit, seed=seed),
        validation=ValidationConfig(atol=atol, rtol=rtol, max_accuracy_drop=max_accuracy_drop,
                                    min_token_agreement=min_agreement, strict=strict),
        measure=MeasureConfig(runs=bench_runs),
        force=force,
    )
    with progress(not as_json) as say:
        if eval_data is not None or (budget_ms is not None and not _searchable(model)):  # chosen by measurement
            result = _export_measured(request, eval_data, metric, levels, say)
        else:
            result = export_bundle(request, progress=say)
    manifest = result.manifest

    def render() -> None:
        from edgekit.exporters.coverage import CoverageReport
        from edgekit.targets.estimate import LatencyEstimate

        latency = [LatencyEstimate.from_json(item, f"{result.path}: latency[{i}]") for i, item in enumerate(manifest.latency)]
        rows = [[name, human_bytes(info["bytes"]), info["sha256"][:16]] for name, info in manifest.files.items()]
        out.print(table(f"bundle {result.path}  ({manifest.name} -> {manifest.target}, {manifest.format} {manifest.precision})",
                        ["file", "size", "sha256"], rows))
        for line in _parity_lines(manifest.validation):
            out.print(line)
        for fmt, entry in manifest.formats.items():  # --format all
            files = ", ".join(graph.file for graph in entry["graphs"].values())
            out.print(f"also {fmt} {entry['precision']} ({files}): " + "; ".join(_parity_lines(entry["validation"])))
        accuracy = manifest.validation.get("accuracy")
        for step in accuracy["steps"] if accuracy else ():
            out.print(f"{step['label']}: held-out top-1 {100 * step['before']:.1f}% -> {100 * step['after']:.1f}% "
                      f"({step['samples']} samples, {step['runtime']}; before: {step['baseline']})")
        variant = manifest.validation.get("precision")
        if variant and "token_agreement" in variant:  # a language model's decoder variant
            from edgekit.models.slm.quantize import agreement_line

            out.print(agreement_line(manifest.precision, variant), markup=False)
        elif variant:
            vs = variant["vs_fp32"]
            text = f"{manifest.precision} vs fp32: mean relative error {vs['mean_rel_error']:.2e}"
            if vs["top1_agreement"] is not None:
                agreement = "pixel agreement" if vs.get("metric") == "mIoU" else "top-1 agreement"
                text += f", {agreement} {100 * vs['top1_agreement']:.1f}%"
            if vs["accuracy_drop"] is not None:
                text += f", {_metric_name(vs.get('metric'))} {100 * vs['accuracy_fp32']:.1f}% -> {100 * vs['accuracy']:.1f}%"
            out.print(text + f" ({vs['samples']} samples of {vs['data']})")
            if "chosen" in variant:
                out.print(f"int8 configuration: {variant['chosen']} (fastest within error of the best, measured here)")
        if accuracy:
            exported = accuracy["exported"]
            value = exported.get("miou", exported.get("top1"))
            out.print(f"accuracy: held-out {accuracy['metric']} {100 * value:.1f}% ({exported['samples']} samples of "
                      f"{accuracy['data']}, {exported['runtime']})")
        for entry in latency:  # a model of several graphs says which graph / step each latency is of
            what = entry.details.get("what")
            out.print(entry.summary() + (f": {what}" if what else ""))
        search = manifest.extra.get("search")
        if search and search.get("by") == "measurement":  # export --eval-data --budget-ms
            choice = search["choice"]
            out.print(f"chosen by measurement under {search['budget_ms']:g} ms: level {choice['level']:g}, "
                      f"{choice['unit']}/{choice['precision']}/{choice['format']}, {choice['latency_ms']:.3f} ms "
                      f"({choice['latency_source']}), {search['metric']} {choice['accuracy']:.4f} (measured on "
                      f"{search['eval_samples']} eval samples); budget {'held' if search['budget_held'] else 'MISSED'}")
        elif search:
            best = search["best"]
            out.print(f"search: {best['unit']}/{best['precision']} predicted {best['latency_ms']:.3f} ms "
                      f"({best['latency_source']}) and {100 * best['accuracy']:.2f}% (predicted) under {search['budget_ms']:g} ms; "
                      f"{search['search']['evaluated']} candidates in {search['search']['seconds']:.2f} s")
            if "budget_held" in search:
                out.print(f"budget {'held' if search['budget_held'] else 'MISSED'}: measured {search['measured_ms']:.3f} ms "
                          f"on this host vs {search['budget_ms']:g} ms")
        if result.latency_note and not any(entry.target == manifest.target for entry in latency):
            out.print(f"latency on {manifest.target}: no prediction: {result.latency_note}")
        for graph, record in manifest.validation.get("op_coverage", {}).items():  # nodes the target's unit cannot run
            report = CoverageReport.from_json(record)
            if report.nodes:  # all supported: recorded in the manifest; `edgekit inspect --target` shows it
                out.print("warning: " + report.summary() + (f" [{graph}]" if len(manifest.graphs) > 1 else ""), markup=False)
        for runtime, kit in manifest.extra.get("kits", {}).items():  # device build kits (exporters/kits.py)
            out.print(f"{runtime} build kit: {', '.join(kit['files'])} ({kit['verified']})", markup=False)

    emit({"bundle": str(result.path), "manifest": manifest.to_json(),
          **({"latency_note": result.latency_note} if result.latency_note else {})}, as_json, render)


def _parity_line(label: str, record: Mapping[str, Any]) -> str:
    """One validation record as a line whose verdict can be checked by eye against the printed criterion."""

    def worst(value) -> float:
        return max(value.values(), default=0.0) if isinstance(value, Mapping) else float(value)

    text = f"{label}: max abs error {worst(record['max_abs_error']):.2e}"
    if "max_rel_error" in record:
        text += f", max rel error {worst(record['max_rel_error']):.1e}"
    criterion = f"criterion |err| <= atol {record['atol']:g} + rtol {record['rtol']:g} x |torch|"
    if "trials" in record:
        criterion += f", {record['trials']} trials"
    return f"{text} ({criterion}) - {'passed' if record.get('passed', True) else 'FAILED'}"


def _parity_lines(validation: Mapping[str, Any]) -> list[str]:
    """Single-graph bundles: one line; multi-graph bundles: one per graph plus the chained check."""
    if "graphs" not in validation:
        return [_parity_line("parity vs torch", validation)]
    lines = [_parity_line(f"parity vs torch ({name})", record) for name, record in validation["graphs"].items()]
    if "chained_vs_source" in validation:
        lines.append(_parity_line("parity of the chained graphs vs the source model", validation["chained_vs_source"]))
    return lines


def _io_options(shapes: List[str], input_names: Optional[str], output_names: Optional[str],
                dynamic: Optional[str], trust_model_file: bool) -> tuple[Any, dict[str, Any]]:
    """The bare ``--input-shape`` and the other I/O fields of the ModelRequest, parsed."""
    from edgekit.models.registry import parse_dynamic, parse_input_shapes, parse_names

    shape, named = parse_input_shapes(shapes)
    return shape, {
        "input_shapes": named,
        "input_names": parse_names(input_names, "--input-names") if input_names is not None else None,
        "output_names": parse_names(output_names, "--output-names") if output_names is not None else None,
        "dynamic_hw": parse_dynamic(dynamic),
        "trust_model_file": trust_model_file,
    }


def _one_subnet(subnet: Optional[str], subnet_file: Optional[Path]) -> Optional[str]:
    from edgekit.runtimes.errors import UsageError

    if subnet is not None and subnet_file is not None:
        raise UsageError("pass --subnet or --subnet-file, not both")
    return subnet if subnet is not None else (str(subnet_file) if subnet_file is not None else None)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)


def _metric_name(metric: str | None) -> str:
    """How the summary names a variant's held-out score: ``accuracy`` (top-1) or the task's metric."""
    return metric if metric and metric != "top-1" else "accuracy"


def _searchable(model: Optional[str]) -> bool:
    from edgekit.models.registry import DEFAULT_MODEL

    from edgekit.search.family import has_search_space

    return has_search_space(model or DEFAULT_MODEL)


def _export_measured(request, eval_data: Optional[Path], metric: Optional[str], levels: Optional[str], say):
    """``export --budget-ms B --eval-data F``: select by measurement (edgekit.measured_select), write the choice."""
    from edgekit.measured_select import MeasuredRequest, export_choice, select_measured
    from edgekit.pipeline import ExportResult
    from edgekit.runtimes.bundle import read_bundle
    from edgekit.runtimes.errors import UsageError

    from .select_measured import parse_levels

    if request.search.budget_ms is None:
        raise UsageError("--eval-data selects a candidate under --budget-ms: pass --budget-ms too")
    precision = request.output.precision or "auto"
    selection = select_measured(MeasuredRequest(request.model, eval_data, metric, request.target,
                                                request.search.budget_ms, parse_levels(levels), unit=request.search.unit,
                                                precision=precision, target_file=request.target_file), say)
    say(f"writing {selection.best.candidate.label()} to {request.out}")
    out = export_choice(selection, Path(request.out), force=request.force)
    return ExportResult(out, read_bundle(out).manifest)
