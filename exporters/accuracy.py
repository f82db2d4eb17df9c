"""How much a step changes a model: a precision variant's agreement with the fp32 file, and held-out
task accuracy before and after any step that changes numbers (BatchNorm recalibration on user data, a
precision variant) when labels exist. The pipeline records this in the manifest and refuses a step that
collapses accuracy.

Example:
    >>> import numpy as np
    >>> ref = [{"y": np.array([[0.1, 0.9]])}, {"y": np.array([[0.8, 0.2]])}]
    >>> test = [{"y": np.array([[0.2, 0.8]])}, {"y": np.array([[0.4, 0.6]])}]
    >>> report = compare_outputs(ref, test, labels=np.array([1, 0]))
    >>> report.top1_agreement, report.accuracy_reference, report.accuracy_variant
    (0.5, 1.0, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import ExportError
from edgekit.runtimes.spec import TensorSpec

__all__ = ["PrecisionReport", "AccuracyStep", "compare_outputs", "compare_files", "check_not_collapsed", "top1",
           "run_file", "Metric"]

# A task's held-out score of the outputs of several runs against their labels, in [0, 1] (top-1 by default;
# a segmenter's family passes mIoU): ``metric(outputs, labels) -> float``.
Metric = Callable[[Sequence[Mapping[str, np.ndarray]], np.ndarray], float]


@dataclass(frozen=True)
class PrecisionReport:
    samples: int  # rows over all runs (first axis), not runs
    mean_rel_error: float
    top1_agreement: float | None  # for outputs shaped (batch, classes), or per pixel for (batch, classes, H, W)
    accuracy_reference: float | None  # with labels
    accuracy_variant: float | None
    data: str = ""
    metric: str = "top-1"  # what accuracy_* measure

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_reference is None or self.accuracy_variant is None:
            return None
        return self.accuracy_reference - self.accuracy_variant

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "mean_rel_error": self.mean_rel_error, "top1_agreement": self.top1_agreement,
                "accuracy_fp32": self.accuracy_reference, "accuracy": self.accuracy_variant,
                "accuracy_drop": self.accuracy_drop, "data": self.data, "metric": self.metric}


@dataclass(frozen=True)
class AccuracyStep:
    """Held-out top-1 before and after one step that changes a model's numbers.

    Example:
        >>> step = AccuracyStep("bn_recalibration", "BatchNorm recalibration on --bn-data x.npy", 0.99, 0.242, 512)
        >>> step.check(max_drop=0.05)
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ExportError: BatchNorm recalibration on --bn-data x.npy drops held-out top-1 from 99.0% to 24.2% (512 samples; limit 5.0 points); nothing was written
    """

    step: str  # a short key: "bn_recalibration"
    label: str  # what the step did, in words (error messages and the CLI summary)
    before: float  # top-1 of the reference the step is measured against
    after: float
    samples: int
    baseline: str = ""  # what "before" is
    runtime: str = "torch"

    @property
    def drop(self) -> float:
        return self.before - self.after

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "label": self.label, "before": self.before, "after": self.after,
                "drop": self.drop, "samples": self.samples, "baseline": self.baseline, "runtime": self.runtime}

    def check(self, max_drop: float) -> None:
        """Raise ExportError, with the numbers, when the step loses more than ``max_drop`` (0.05 = 5 points)."""
        if self.drop > max_drop:
            raise ExportError(
                f"{self.label} drops held-out top-1 from {100 * self.before:.1f}% to {100 * self.after:.1f}% "
                f"({self.samples} samples; limit {100 * max_drop:.1f} points); nothing was written"
            )


def top1(outputs: Sequence[Mapping[str, np.ndarray]], labels: np.ndarray) -> float:
    """Top-1 accuracy of the first output of each run (batches of shape (batch, classes)) against ``labels``.

    Example:
        >>> top1([{"y": np.array([[0.1, 0.9], [0.7, 0.3]])}], np.array([1, 1]))
        0.5
    """
    predictions = np.concatenate([np.asarray(next(iter(out.values()))).argmax(1) for out in outputs])
    labels = np.asarray(labels).reshape(-1)
    assert predictions.shape == labels.shape, "one label per sample"
    return float(np.mean(predictions == labels))


def run_file(path: Path, inputs: Sequence[TensorSpec], samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict]:
    """Outputs of the ONNX file at ``path`` on each feed of ``samples`` (onnxruntime, 1 thread)."""
    from edgekit.runtimes.ort import OrtSession

    session = OrtSession(path, threads=1, inputs=inputs)
    return [session.run(dict(s)) for s in samples]


def compare_outputs(
    reference: Sequence[Mapping[str, np.ndarray]],
    variant: Sequence[Mapping[str, np.ndarray]],
    labels: np.ndarray | None = None,
    data: str = "",
    metric: tuple[str, Metric] | None = None,
) -> PrecisionReport:
    """Compare the first output of each run pair; top-1 for 2-D outputs (per pixel for 4-D segmentation
    logits); accuracy when labels are given: top-1, or ``metric`` (its name and function) when given.
    ``mean_rel_error`` is the mean over runs; ``samples`` counts rows (a run may hold a batch)."""
    assert len(reference) == len(variant), "reference and variant must cover the same samples"
    errors, ref_top, var_top, rows = [], [], [], 0
    for a_out, b_out in zip(reference, variant):
        a = np.asarray(next(iter(a_out.values())), np.float64)
        b = np.asarray(next(iter(b_out.values())), np.float64)
        errors.append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12)))
        rows += a.shape[0] if a.ndim else 1  # a run holds a batch of samples on the first axis
        if a.ndim == 2 or (a.ndim == 4 and metric is not None):  # per pixel for segmentation logits
            ref_top.append(a.argmax(1).reshape(-1))
            var_top.append(b.argmax(1).reshape(-1))
    agreement = accuracy_ref = accuracy_var = None
    if metric is not None and labels is not None:
        accuracy_ref, accuracy_var = metric[1](reference, labels), metric[1](variant, labels)
        labels = None  # scored already
    if ref_top:
        ref_pred, var_pred = np.concatenate(ref_top), np.concatenate(var_top)
        agreement = float(np.mean(ref_pred == var_pred))
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            assert labels.shape == ref_pred.shape, "one label per sample"
            accuracy_ref = float(np.mean(ref_pred == labels))
            accuracy_var = float(np.mean(var_pred == labels))
    return PrecisionReport(rows, float(np.mean(errors)), agreement, accuracy_ref, accuracy_var, data,
                           metric[0] if metric is not None else "top-1")


def compare_files(
    reference: Path, variant: Path, inputs: Sequence[TensorSpec], samples: Sequence[Mapping[str, np.ndarray]],
    labels: np.ndarray | None = None, data: str = "",
) -> PrecisionReport:
    """Run both ONNX files on ``samples`` with onnxruntime (1 thread) and compare them."""
    return compare_outputs(run_file(reference, inputs, samples), run_file(variant, inputs, samples), labels, data)


def check_not_collapsed(report: PrecisionReport, precision: str, *, max_accuracy_drop: float, max_rel_error: float) -> None:
    """Raise ExportError with the numbers when the variant lost too much (accuracy if labelled, else error)."""
    drop = report.accuracy_drop
    if drop is not None and drop > max_accuracy_drop:
        raise ExportError(
            f"{precision} collapses {'accuracy' if report.metric == 'top-1' else report.metric} on {report.samples} "
            f"{report.data} samples: "
            f"{100 * report.accuracy_reference:.1f}% fp32 -> {100 * report.accuracy_variant:.1f}% "
            f"(drop {100 * drop:.1f} points > allowed {100 * max_accuracy_drop:.1f}); not written"
        )
    if drop is None and report.mean_rel_error > max_rel_error:
        raise ExportError(
            f"{precision} output differs from fp32 by {100 * report.mean_rel_error:.1f}% on average "
            f"(allowed {100 * max_rel_error:.1f}%) over {report.samples} {report.data} samples; not written"
        )
