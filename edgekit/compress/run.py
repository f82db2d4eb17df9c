"""``edgekit compress``: dense -> pruned -> sparsified -> fine-tuned -> quantized, each step exported
through the export pipeline and measured, the last written as the bundle.

:func:`compress` checks every option and data file first (nothing is written on a bad one), prunes /
sparsifies / fine-tunes the torch model (:mod:`.allocation`, :mod:`.sparsity`, :mod:`.finetune`), exports
each step with :func:`edgekit.pipeline.export_bundle` into a scratch directory (validation, host
timing, the target's latency model, the TensorRT kit reading the ``compression`` record), scores each
bundle's mIoU through the runtime, refuses a drop of more than ``max_drop`` mIoU points unless
``allow_drop``, and copies the last bundle to ``out`` (atomically, refusing what edgekit did not write)
with the report as the manifest's ``compression`` record. int8 / fp16 are the pipeline's own variants
(ONNX QDQ through onnxruntime's quantizer, calibrated on the calibration images).

Example:
    >>> CompressRequest(out=Path("x"), model="m.py:build", sparsity="2:4", magnitude=0.8).check()
    Traceback (most recent call last):
    ...
    edgekit.runtimes.errors.UsageError: pass --sparsity N:M or --magnitude S, not both
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.runtimes.errors import UsageError, ValidationError

from .allocation import DEFAULT_ALLOCATION
from .data import SegData, check_against, family_scenes, load_npz
from .report import CompressReport, StepReport
from .sparsity import check_ratio, parse_pattern

__all__ = ["CompressRequest", "compress", "QUANTIZE", "SCENE_FAMILIES"]

Progress = Callable[[str], None]
QUANTIZE = ("int8", "fp16")
# Kept channel counts are multiples of 8: onnxruntime's blocked (NCHWc) convolution kernels need them, and
# seg-simple at 50% MACs with uneven counts (11, 22, 45...) ran slower than dense (0.335 vs 0.294 ms at 64 px,
# 1 thread) while multiples of 8 ran 1.7-1.9x faster (0.14-0.17 ms). Groups of <= 16 channels stay whole (see
# prune_to_macs), which kept the accuracy that rounding had cost (the 16-channel stage cut to 8: -7 mIoU points).
SPEED_ROUND_TO: int | None = 8
DEFAULT_FINETUNE_STEPS = 100
SCENE_FAMILIES = ("seg-", "hf-seg:")  # references whose default data are the procedural scenes
EVAL_SCENES, TRAIN_SCENES, CALIB_SCENES = 64, 256, 32


@dataclass(frozen=True)
class CompressRequest:
    """Everything ``edgekit compress`` takes; ratios are fractions, ``max_drop`` is in mIoU points."""

    out: Path
    model: str | None = "seg-simple"
    target: str | None = "host"
    target_file: Path | None = None
    prune: float | None = None  # fraction of MACs to remove (structured channels)
    allocation: str | None = None  # "uniform" | "sensitivity"; None: DEFAULT_ALLOCATION (a SegFormer: uniform)
    sparsity: str | None = None  # "N:M"
    magnitude: float | None = None  # final unstructured sparsity, raised gradually during fine-tuning
    quantize: str | None = None  # "int8" | "fp16"
    finetune_steps: int | None = None  # None: DEFAULT_FINETUNE_STEPS, or none after a shipped level
    from_dense: bool = False  # prune and fine-tune here even when a shipped level matches
    max_drop: float = 1.0
    allow_drop: bool = False
    eval_data: Path | None = None
    calib_data: Path | None = None
    train_data: Path | None = None
    batch: int = 8
    lr: float = 3e-3  # with the cosine decay: 45.8 vs 43.1 mIoU after 300 steps at 50% MACs (1e-3, constant)
    runs: int = 20  # timed runs per step on this host (1 thread)
    seed: int = 0
    force: bool = False

    def check(self) -> None:
        """Refuse bad options before any work (one line each)."""
        from .allocation import ALLOCATIONS

        if self.prune is not None:
            check_ratio(self.prune, "--prune")
        if self.magnitude is not None:
            check_ratio(self.magnitude, "--magnitude")
        if self.sparsity is not None and self.magnitude is not None:
            raise UsageError("pass --sparsity N:M or --magnitude S, not both")
        if self.sparsity is not None:
            parse_pattern(self.sparsity)
        if self.allocation is not None and self.allocation not in ALLOCATIONS:
            raise UsageError(f"--allocation {self.allocation}: expected one of {', '.join(ALLOCATIONS)}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise UsageError(f"--quantize {self.quantize}: expected one of {', '.join(QUANTIZE)}")
        if self.finetune_steps is not None and self.finetune_steps < 0:
            raise UsageError(f"--finetune-steps {self.finetune_steps}: expected a whole number >= 0")
        if self.max_drop < 0:
            raise UsageError(f"--max-drop {self.max_drop:g}: expected mIoU points >= 0")

    @property
    def scenes(self) -> bool:
        """Whether the model's family brings its own data (the procedural scenes)."""
        return (self.model or "").startswith(SCENE_FAMILIES)

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "prune": self.prune, "allocation": self.allocation if self.prune else None,
                "sparsity": self.sparsity, "magnitude": self.magnitude, "quantize": self.quantize,
                "finetune_steps": self.finetune_steps, "max_drop": self.max_drop, "seed": self.seed}


def _finetune_steps(request: CompressRequest, shipped: bool) -> int:
    """Fine-tuning steps to run: as asked, else none after a shipped (already fine-tuned) level, else the default."""
    if request.finetune_steps is not None:
        return request.finetune_steps
    return 0 if shipped else DEFAULT_FINETUNE_STEPS


@dataclass(frozen=True)
class _Data:
    eval: SegData
    train: SegData | None
    calib: SegData | None


def _load_data(request: CompressRequest, sample_shape: tuple, num_classes: int) -> _Data:
    """The eval, fine-tuning and calibration data, each checked against the model; errors name the option."""
    ref = request.model
    size = sample_shape[-1] if isinstance(sample_shape[-1], int) else 64
    if request.eval_data is not None:
        eval_data = load_npz(request.eval_data, "--eval-data")
    else:
        assert request.scenes, "a model without data of its own is refused by _load_model"
        eval_data = family_scenes(EVAL_SCENES, size, "val", request.seed)
    train = None
    if request.train_data is not None:
        train = load_npz(request.train_data, "--train-data")
    elif request.scenes:
        train = family_scenes(TRAIN_SCENES, size, "train", request.seed)
    elif (wanted := _finetune_steps(request, shipped=False)) > 0 and (request.prune or request.sparsity or request.magnitude):
        raise UsageError(f"--model {ref}: --finetune-steps {wanted} needs --train-data F.npz "
                         "(images, labels), or pass --finetune-steps 0")
    calib = None
    if request.calib_data is not None:
        calib = load_npz(request.calib_data, "--calib-data", labels=False)
    elif request.scenes:
        calib = family_scenes(CALIB_SCENES, size, "calib", request.seed)
    elif request.quantize == "int8":
        raise UsageError(f"--model {ref}: --quantize int8 needs --calib-data F.npz (images) to calibrate on")
    for data in (eval_data, train, calib):
        if data is not None:
            check_against(data, sample_shape, num_classes)
    return _Data(eval_data, train, calib)


def _load_model(request: CompressRequest, say: Progress):
    """The family's source for ``--model``; a user model takes its input shape from the eval data."""
    from edgekit.models.registry import ModelRequest, find_family

    family = find_family(request.model)
    if request.eval_data is None and not request.scenes:
        raise UsageError(f"--model {request.model}: pass --eval-data F.npz (images, labels) to measure mIoU")
    shape = None
    if request.eval_data is not None and not request.scenes:
        shape = (1, *load_npz(request.eval_data, "--eval-data").images.shape[1:])
    say(f"loading model {request.model}")
    model_request = ModelRequest(request.model, shape)
    source = family.load(model_request)
    if not source.single_graph or len(source.inputs) != 1:
        raise UsageError(f"--model {request.model}: compress takes a model of one graph with one image input")
    return source, model_request


def _miou(bundle: Path, data: SegData, num_classes: int, input_name: str, batch: int = 16) -> float:
    """mIoU of a bundle on ``data``, run through its runtime (numpy in, numpy out)."""
    import edgekit.runtimes as rt
    from edgekit.models.seg.metrics import confusion_matrix, score_confusion, to_class_map

    session = rt.load(bundle, threads=1)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for start in range(0, len(data), batch):
        outputs = session.run({input_name: data.images[start:start + batch]})
        name, output = next(iter(outputs.items()))
        confusion += confusion_matrix(to_class_map(output, num_classes=num_classes, name=name),
                                      data.labels[start:start + batch], num_classes)
    return score_confusion(confusion, len(data)).miou


def _latencies(manifest, target_name: str) -> tuple[dict | None, dict | None]:
    """(the host measurement, the target's first prediction) among the manifest's latency entries."""
    host = next((e for e in manifest.latency if e["source"] == "measured" and e["target"] == "host"), None)
    predicted = next((e for e in manifest.latency if e["source"] != "measured" and e["target"] == target_name), None)
    return host, predicted


class _Steps:
    """Exports and measures each step into a scratch directory; the last one is what gets written."""

    def __init__(self, request: CompressRequest, source, model_request, data: _Data, num_classes: int,
                 work: Path, say: Progress):
        self.request, self.source, self.model_request, self.data = request, source, model_request, data
        self.num_classes, self.work, self.say = num_classes, work, say
        self.example = source.example_inputs[0]
        self.rows: list[StepReport] = []
        self.bundles: list[tuple[Path, Any]] = []  # (scratch bundle, its manifest) of each step
        self.model: Any = None  # the model of the last step
        self.record: dict[str, Any] = {}

    def _family_source(self, module):
        from edgekit.models.source import FamilyData

        calib = self.data.calib
        name = self.source.inputs[0].name

        def calibration(n: int) -> list[dict[str, np.ndarray]]:
            assert calib is not None, "int8 is refused without calibration images"
            return [{name: calib.images[i:i + 1]} for i in range(min(n, len(calib)))]

        from .prune import count_macs

        graph = replace(self.source.graph, module=module.eval())
        extra = {**self.source.extra, "num_classes": self.num_classes, "compression": dict(self.record)}
        if "macs" in extra or "params" in extra:  # the family's own counts are the dense model's
            extra["macs"], extra["params"] = count_macs(module, self.example)
        return replace(self.source, graphs={graph.name: graph}, extra=extra, task="segmentation",  # logits checked
                       data=FamilyData(int8_calibration=calibration if calib is not None else None))

    def measure(self, label: str, module, precision: str = "fp32") -> StepReport:
        from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle

        from .prune import count_macs
        from .sparsity import count_nonzero

        self.say(f"step {len(self.rows) + 1}: {label}: exporting and measuring")
        path = self.work / f"{len(self.rows)}-{label.replace(' ', '-')}"
        result = export_bundle(ExportRequest(
            out=path, model=self.model_request, target=self.request.target, target_file=self.request.target_file,
            output=OutputConfig(precision=precision), measure=MeasureConfig(runs=self.request.runs, threads=1),
            source=self._family_source(module)))
        manifest = result.manifest
        macs, params = count_macs(module.eval(), self.example)
        host, predicted = _latencies(manifest, manifest.target)
        miou = _miou(path, self.data.eval, self.num_classes, self.source.inputs[0].name)
        row = StepReport(
            label, macs, params, count_nonzero(module),
            sum(manifest.files[g.file]["bytes"] for g in manifest.graphs.values()), miou,
            host["ms"] if host else None, "measured" if host else None,
            predicted["ms"] if predicted else None, predicted["source"] if predicted else None, precision,
            manifest.target, predicted.get("unit") if predicted else None)
        self.rows.append(row)
        self.bundles.append((path, manifest))
        self.say(f"{label}: mIoU {100 * miou:.2f}")
        return row


def _tensors(data: SegData | None):
    import torch

    if data is None:
        return None, None
    labels = None if data.labels is None else torch.from_numpy(data.labels)
    return torch.from_numpy(data.images), labels


def _transform(request: CompressRequest, steps: _Steps, dense) -> None:
    """Prune, sparsify and fine-tune, measuring after each."""
    import torch

    from .allocation import allocate_and_prune
    from .finetune import FinetuneConfig, finetune, gradual_masks
    from .segformer import is_segformer, prune_segformer_to_macs
    from .sparsity import apply_masks, magnitude_masks, mask_sparsity, nm_masks

    from .levels import shipped_level

    torch.manual_seed(request.seed)
    images, labels = _tensors(steps.data.train)
    model = dense
    allocation = request.allocation or ("uniform" if is_segformer(dense) else DEFAULT_ALLOCATION)
    round_to = parse_pattern(request.sparsity)[1] if request.sparsity else SPEED_ROUND_TO
    level = None
    if request.prune is not None and not (request.from_dense or request.sparsity or request.magnitude):
        level = shipped_level(request.model, request.prune, allocation, round_to)
    finetune_steps = _finetune_steps(request, shipped=level is not None)
    if level is not None:
        model, shipped = level
        steps.say(f"pruned {request.prune:.0%} of the MACs: shipped level {shipped['file']} "
                  f"({shipped['finetune']['steps']} fine-tuning steps; --from-dense prunes here instead)")
        steps.record.update(macs_removed=shipped["macs_removed"], allocation=allocation, round_to=shipped["round_to"], shipped_level={
            key: shipped[key] for key in ("file", "training_command", "finetune", "val")})
        steps.measure("pruned + fine-tuned (shipped level)", model)
    elif request.prune is not None:
        steps.say(f"pruning {request.prune:.0%} of the MACs ({allocation} rates)")
        from .train_levels import PROBE_SCENES

        probe = images[:PROBE_SCENES] if images is not None else torch.from_numpy(steps.data.eval.images[:PROBE_SCENES])
        probe_labels = labels[:PROBE_SCENES] if labels is not None else None
        if is_segformer(dense):  # whole attention heads and MLP widths: channel pruning would split heads
            if allocation != "uniform":
                raise UsageError(f"--allocation {allocation}: a SegFormer is pruned by heads and MLP widths at "
                                 "one ratio (uniform)")
            result, sensitivity = prune_segformer_to_macs(dense, steps.example, request.prune), None
        else:
            result, sensitivity = allocate_and_prune(
                dense, steps.example, request.prune, allocation, images=probe, labels=probe_labels,
                round_to=round_to)
        model = result.model
        steps.record.update(macs_removed=result.removed, allocation=allocation, rates=dict(result.rates), round_to=result.round_to,
                            **({"sensitivity": sensitivity} if sensitivity else {}))
        steps.measure("pruned", model)
    masks: Any = None
    if request.sparsity is not None:
        n, m = parse_pattern(request.sparsity)
        masks = nm_masks(model, n, m)
        if not masks:
            raise UsageError(f"--sparsity {request.sparsity}: no convolution or linear layer has a multiple of {m} inputs")
        model = copy.deepcopy(model)
        apply_masks(model, masks)
        steps.record.update(sparsity=f"{n}:{m}", sparse_layers=len(masks), weight_sparsity=mask_sparsity(masks))
        steps.measure(f"sparsified {n}:{m}", model)
    if request.magnitude is not None:
        steps.record.update(magnitude=request.magnitude, schedule="cubic (Zhu & Gupta)")
        if finetune_steps == 0:
            model = copy.deepcopy(model)
            masks = magnitude_masks(model, request.magnitude)
            apply_masks(model, masks)
            steps.record.update(weight_sparsity=mask_sparsity(masks))
            steps.measure(f"magnitude {request.magnitude:.0%}", model)
        else:
            masks = gradual_masks(request.magnitude, finetune_steps)
    if finetune_steps > 0 and (model is not dense or masks is not None):  # magnitude alone: masks only
        assert images is not None, "checked by _load_data"
        steps.say(f"fine-tuning {finetune_steps} steps with distillation from the dense model")
        model = copy.deepcopy(model)
        losses = finetune(model, dense, images, labels,
                          FinetuneConfig(finetune_steps, batch=request.batch, lr=request.lr, seed=request.seed),
                          masks)
        final_masks = masks(model, finetune_steps) if callable(masks) else masks
        if final_masks:
            steps.record.update(weight_sparsity=mask_sparsity(final_masks))
        steps.record.update(finetune={"steps": finetune_steps, "loss_first": losses[0], "loss_last": losses[-1],
                                      "lr": request.lr, "batch": request.batch})
        steps.measure("fine-tuned" + (f" + magnitude {request.magnitude:.0%}" if request.magnitude else ""), model)
    steps.model = model


def _num_classes(ref: str | None, source) -> int:
    """The class count of the model's logits (N, C, H, W); a one-line UsageError saying what it returns otherwise."""
    import torch

    with torch.no_grad():
        output = source.module.eval()(*source.example_inputs)
    name = (source.output_names or ("output",))[0]
    if isinstance(output, dict):
        name, output = next(iter(output.items()))
    if not (isinstance(output, torch.Tensor) and output.dim() == 4 and output.is_floating_point()):
        found = f"shaped {tuple(output.shape)} {output.dtype}" if isinstance(output, torch.Tensor) else type(output).__name__
        raise UsageError(f"--model {ref}: output {name!r} is {found}: compress takes segmentation logits (N, C, H, W)")
    return int(output.shape[1])


def compress(request: CompressRequest, progress: Progress | None = None) -> CompressReport:
    """Run every step, guard the accuracy, write the bundle to ``request.out``; returns the report (the
    manifest's ``compression`` record holds it too)."""
    from edgekit.pipeline import resolve_target
    from edgekit.runtimes.bundle_writer import BundleWriter

    say = progress or (lambda message: None)
    request.check()
    BundleWriter(request.out, force=request.force).check_destination()
    resolve_target(request.target, request.target_file)
    source, model_request = _load_model(request, say)
    dense = source.module.eval()
    num_classes = _num_classes(request.model, source)
    data = _load_data(request, source.inputs[0].shape[1:], num_classes)
    with tempfile.TemporaryDirectory(prefix="edgekit-compress-") as work:
        steps = _Steps(request, source, model_request, data, num_classes, Path(work), say)
        steps.model = dense
        steps.measure("dense", dense)
        _transform(request, steps, dense)
        if request.quantize is not None:
            steps.record.update(quantize=request.quantize)
            steps.measure(request.quantize, steps.model, request.quantize)
        report = CompressReport(tuple(steps.rows), request.settings(), {"eval": data.eval.where, "samples": len(data.eval)})
        if report.drop_points > request.max_drop and not request.allow_drop:
            raise ValidationError(
                f"mIoU fell from {100 * report.dense.miou:.2f} (dense) to {100 * report.final.miou:.2f} "
                f"({report.final.step}): {report.drop_points:.2f} points > --max-drop {request.max_drop:g}; "
                "nothing was written (--allow-drop writes it anyway)")
        final, manifest = steps.bundles[-1]
        with BundleWriter(request.out, force=request.force) as stage:
            shutil.copytree(final, stage.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.json"))
            say("writing bundle")
            stage.commit(replace(manifest, files={}, extra={
                **manifest.extra, "compression": {**steps.record, **report.to_json()}}))
    return report
