"""A user's labelled evaluation data and the metric that scores a model on it (``select --eval-data --metric``).

The data is a ``.npz`` with ``inputs`` (or ``images``), the model's one input, samples first, and
``labels``: class ids (N,) for ``top1``, label maps (N, H, W) for ``miou``, float targets shaped as the
output for ``mse``, or anything a ``module:function`` metric takes. A metric maps (outputs, labels) to a
score where higher is better (``mse`` is scored as its negative and shown as the mse). Numpy only.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "val.npz"
    >>> np.savez(path, inputs=np.zeros((4, 3, 8, 8), np.float32), labels=np.array([0, 1, 1, 2]))
    >>> data = load_eval_data(path)
    >>> metric = get_metric("top1")
    >>> metric.score(np.eye(3)[[0, 1, 2, 2]], data.labels)
    0.75
    >>> get_metric("f1")
    Traceback (most recent call last):
    ...
    edgekit.runtimes.errors.UsageError: --metric 'f1': expected top1, miou, mse or module:function
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.formats import import_ref
from edgekit.runtimes.limits import load_npz

__all__ = ["EvalData", "Metric", "load_eval_data", "get_metric", "METRICS"]

METRICS = ("top1", "miou", "mse")


@dataclass(frozen=True)
class EvalData:
    inputs: np.ndarray
    labels: np.ndarray
    path: Path
    sha256: str

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def split(self, calibration: int) -> tuple["EvalData", np.ndarray]:
        """The first ``calibration`` samples apart (int8 calibration), the rest to score on."""
        rest = EvalData(self.inputs[calibration:], self.labels[calibration:], self.path, self.sha256)
        return rest, self.inputs[:calibration]


@dataclass(frozen=True)
class Metric:
    name: str
    score: Callable[[np.ndarray, np.ndarray], float]  # higher is better
    check: Callable[[np.ndarray, np.ndarray, str], None]  # (one output, labels, where): UsageError when they do not fit
    shown: Callable[[float], str]

    def display(self, value: float | None) -> str:
        return "-" if value is None else self.shown(value)


def load_eval_data(path: str | Path, option: str = "--eval-data") -> EvalData:
    """Read and check the ``.npz`` (see the module docstring); one-line UsageError naming the file and array."""
    path = Path(path)
    where = f"{option} {path}"
    arrays = load_npz(path, option)  # the size limit holds for what the archive expands to
    key = next((k for k in ("inputs", "images") if k in arrays), None)
    if key is None or "labels" not in arrays:
        raise UsageError(f"{where}: expected arrays 'inputs' (or 'images') and 'labels'; it has {sorted(arrays)}")
    inputs, labels = arrays[key], arrays["labels"]
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise UsageError(f"{where}: {key} shaped {inputs.shape}: expected samples first, at least one")
    if labels.shape[0] != inputs.shape[0]:
        raise UsageError(f"{where}: {len(labels)} labels for {len(inputs)} {key}")
    inputs, labels = np.ascontiguousarray(inputs), np.ascontiguousarray(labels)
    digest = hashlib.sha256(f"{inputs.shape}{inputs.dtype}{labels.shape}{labels.dtype}".encode())
    for array in (inputs, labels):  # the data, not the archive's compression
        digest.update(array.data)
    return EvalData(inputs, labels, path, digest.hexdigest())


def _classes(output: np.ndarray, labels: np.ndarray, where: str, axis: int) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"{where}: labels are {labels.dtype}; this metric takes integer class ids")
    classes = output.shape[axis]
    if labels.min() < 0 or labels.max() >= classes:
        raise UsageError(f"{where}: labels span {labels.min()}..{labels.max()} but the model outputs {classes} classes "
                         f"(labels must be in [0, {classes}))")


def _check_top1(output: np.ndarray, labels: np.ndarray, where: str) -> None:
    if output.ndim != 2 or labels.ndim != 1:
        raise UsageError(f"{where}: top1 takes (N, classes) outputs and (N,) labels; got output {output.shape[1:]} per "
                         f"sample and labels {labels.shape}")
    _classes(output, labels, where, 1)


def _check_miou(output: np.ndarray, labels: np.ndarray, where: str) -> None:
    if output.ndim != 4 or labels.shape[1:] != output.shape[2:]:
        raise UsageError(f"{where}: miou takes (N, classes, H, W) logits and (N, H, W) label maps; got output "
                         f"{output.shape[1:]} per sample and labels {labels.shape[1:]} per sample")
    _classes(output, labels, where, 1)


def _check_mse(output: np.ndarray, labels: np.ndarray, where: str) -> None:
    if labels.shape[1:] != output.shape[1:]:
        raise UsageError(f"{where}: mse takes targets shaped as the output; got output {output.shape[1:]} per sample "
                         f"and labels {labels.shape[1:]}")


def _top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


def _miou(outputs: np.ndarray, labels: np.ndarray) -> float:
    from edgekit.models.seg.metrics import score

    return score(np.argmax(outputs, axis=1), labels, outputs.shape[1]).miou


def _mse(outputs: np.ndarray, labels: np.ndarray) -> float:
    return -float(np.mean((outputs.astype(np.float64) - labels.astype(np.float64)) ** 2))


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


_BUILTIN = {
    "top1": Metric("top1", _top1, _check_top1, _percent),
    "miou": Metric("miou", _miou, _check_miou, lambda v: f"{100 * v:.2f} mIoU"),
    "mse": Metric("mse", _mse, _check_mse, lambda v: f"mse {-v:.4g}"),
}


def get_metric(name: str) -> Metric:
    """A built-in metric, or ``module:function`` taking (outputs, labels) and returning a float, higher better."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    if ":" not in name:
        raise UsageError(f"--metric {name!r}: expected {', '.join(METRICS[:-1])}, {METRICS[-1]} or module:function")
    function = import_ref(name, "--metric")

    def score(outputs: np.ndarray, labels: np.ndarray) -> float:
        value: Any = function(outputs, labels)
        if not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):
            raise UsageError(f"--metric {name}: returned {value!r}; expected a finite number (higher is better)")
        return float(value)

    return Metric(name, score, lambda output, labels, where: None, lambda v: f"{v:.4g}")
