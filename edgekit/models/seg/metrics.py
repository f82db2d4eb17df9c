"""Segmentation scores (numpy only): class maps from model outputs, the confusion matrix, mIoU.

IoU of a class is TP / (TP + FP + FN) over every pixel of every sample; mIoU averages it over the
classes that occur in the labels or the predictions (a class absent from both has no IoU). Scores
are fractions in [0, 1]; multiply by 100 for points only when printing.

Example:
    >>> label = np.array([[[0, 0], [1, 1]]])
    >>> pred = np.array([[[0, 1], [1, 1]]])
    >>> s = score(pred, label, 3)
    >>> s.per_class_iou, round(s.miou, 4), s.pixel_accuracy
    ((0.5, 0.6666666666666666, nan), 0.5833, 0.75)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import UsageError

__all__ = ["to_class_map", "confusion_matrix", "SegScore", "score", "score_confusion", "score_outputs", "miou_of_outputs"]


def to_class_map(output: np.ndarray, *, num_classes: int, name: str) -> np.ndarray:
    """Integer class map (N, H, W) from logits (N, num_classes, H, W) or an integer class map (N, H, W).

    Example:
        >>> to_class_map(np.zeros((1, 3, 2, 2)), num_classes=3, name="logits").shape
        (1, 2, 2)
        >>> to_class_map(np.zeros((1, 10)), num_classes=3, name="logits")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: output 'logits' has shape (1, 10) float64: expected segmentation logits (N, 3, H, W) or an integer class map (N, H, W)
    """
    output = np.asarray(output)
    what = f"output {name!r} has shape {tuple(output.shape)} {output.dtype}"
    expected = f"expected segmentation logits (N, {num_classes}, H, W) or an integer class map (N, H, W)"
    if output.ndim == 4 and np.issubdtype(output.dtype, np.floating):
        if output.shape[1] != num_classes:
            raise UsageError(f"{what}: {output.shape[1]} classes on axis 1, {expected}")
        return output.argmax(1)
    if output.ndim == 3 and np.issubdtype(output.dtype, np.integer):
        if output.size and (output.min() < 0 or output.max() >= num_classes):
            raise UsageError(f"{what} with values {output.min()}..{output.max()}: {expected} in [0, {num_classes})")
        return output.astype(np.int64)
    raise UsageError(f"{what}: {expected}")


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) pixel counts, rows = label, columns = prediction.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    pred, label = np.asarray(pred).reshape(-1), np.asarray(label).reshape(-1)
    assert pred.shape == label.shape, "one prediction per labelled pixel"
    counts = np.bincount(label.astype(np.int64) * num_classes + pred.astype(np.int64), minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class SegScore:
    """mIoU, per-class IoU (NaN for a class in neither labels nor predictions), pixel accuracy, the
    confusion matrix (rows = label) and the number of samples scored."""

    miou: float
    per_class_iou: tuple[float, ...]
    pixel_accuracy: float
    confusion: np.ndarray = field(compare=False, repr=False)
    samples: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: NaN IoUs become None."""
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "per_class_iou": [None if np.isnan(v) else v for v in self.per_class_iou],
                "samples": self.samples, "confusion": self.confusion.tolist()}


def score_confusion(confusion: np.ndarray, samples: int) -> SegScore:
    """The :class:`SegScore` of an accumulated confusion matrix."""
    confusion = np.asarray(confusion, np.int64)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else float("nan")
    accuracy = float(tp.sum() / max(confusion.sum(), 1))
    return SegScore(miou, tuple(float(v) for v in iou), accuracy, confusion, samples)


def score(pred_class_maps: np.ndarray, labels: np.ndarray, num_classes: int) -> SegScore:
    """Score integer class maps (N, H, W) against labels of the same shape.

    Example:
        >>> score(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int), 2).miou
        1.0
    """
    pred_class_maps, labels = np.asarray(pred_class_maps), np.asarray(labels)
    if pred_class_maps.shape != labels.shape:
        raise UsageError(f"predictions {tuple(pred_class_maps.shape)} and labels {tuple(labels.shape)} differ in shape")
    return score_confusion(confusion_matrix(pred_class_maps, labels, num_classes), int(labels.shape[0]) if labels.ndim else 0)


def score_outputs(outputs: Sequence[Mapping[str, np.ndarray]], labels: np.ndarray, num_classes: int) -> SegScore:
    """Score the first output of each run (a batch of logits or class maps) against ``labels`` (N, H, W),
    the runs' samples in order.

    Example:
        >>> logits = np.zeros((2, 2, 4, 4)); logits[:, 1, :2] = 1
        >>> labels = np.zeros((2, 4, 4), int); labels[:, :2] = 1
        >>> score_outputs([{"logits": logits[:1]}, {"logits": logits[1:]}], labels, 2).miou
        1.0
    """
    confusion, start = np.zeros((num_classes, num_classes), np.int64), 0
    labels = np.asarray(labels)
    for out in outputs:
        name, value = next(iter(out.items()))
        pred = to_class_map(value, num_classes=num_classes, name=name)
        if pred.shape[1:] != labels.shape[1:] or start + len(pred) > len(labels):
            raise UsageError(f"output {name!r} gives class maps {tuple(pred.shape)}: expected maps of "
                             f"{tuple(labels.shape[1:])}, one per labelled sample ({len(labels)})")
        confusion += confusion_matrix(pred, labels[start:start + len(pred)], num_classes)
        start += len(pred)
    assert start == len(labels), "one run output per labelled sample"
    return score_confusion(confusion, start)


def miou_of_outputs(outputs: Sequence[Mapping[str, np.ndarray]], labels: np.ndarray, num_classes: int) -> float:
    """The mIoU of :func:`score_outputs` (the export pipeline's held-out metric for segmenters)."""
    return score_outputs(outputs, labels, num_classes).miou
