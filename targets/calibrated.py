"""The calibrated latency model: the roofline's terms, re-weighted by a fit to measured latencies.

For one (target, unit, precision, threads), each model becomes a handful of features: the ideal
compute time of each compute op kind at the unit's peak, the megabytes its ops move, its op count and
a constant. A non-negative least-squares fit to measured medians turns them into per-kind
efficiencies, an effective bandwidth and a per-op overhead (``latency ~ sum_k c_k x_k``), so the
prediction stays physically meaningful and extrapolates to models outside the fitted family.
Predictions are labelled ``calibrated``.

Example:
    >>> from edgekit.targets import load_target
    >>> from edgekit.targets.latency import OpCost
    >>> host = load_target("host")
    >>> sizes = (10, 20, 40, 60, 80, 100, 120, 160)
    >>> models = [[OpCost("conv", m * 1_000_000, 1000, 10_000)] for m in sizes]
    >>> measured = [0.1 + 0.04 * m for m in sizes]
    >>> cal = fit_calibration(models, measured, host, "cpu", "fp32", threads=1)
    >>> round(cal.predict([OpCost("conv", 70_000_000, 1000, 10_000)]).ms, 1)
    2.9
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import TargetError
from edgekit.runtimes.precision import bytes_per_element

from .latency import CostLike, Prediction, effective_peak
from .opkinds import COMPUTE_KINDS
from .target import Target

__all__ = ["FEATURES", "features", "Calibration", "fit_calibration", "nnls"]

# Bytes are split by what moves them: compute ops, element-wise and reductions, and data movement
# (resize, concat, transpose, ...), whose per-byte costs differ by an order of magnitude on CPUs.
_BYTE_GROUPS = {"compute": COMPUTE_KINDS, "pointwise": ("elementwise", "reduce"), "movement": ("data_movement", "other")}
FEATURES = (*[f"ideal_ms_{kind}" for kind in COMPUTE_KINDS], *[f"megabytes_{g}" for g in _BYTE_GROUPS], "ops", "constant")


def features(ops: Iterable[CostLike], peak_tops: float, precision: str) -> np.ndarray:
    """The feature vector of one model (see FEATURES) for a unit of ``peak_tops`` at ``precision``."""
    ideal = dict.fromkeys(COMPUTE_KINDS, 0.0)
    megabytes = dict.fromkeys(_BYTE_GROUPS, 0.0)
    group_of = {kind: group for group, kinds in _BYTE_GROUPS.items() for kind in kinds}
    count = 0
    for op in ops:
        count += 1
        if op.kind == "view":  # reshapes copy nothing: they cost only their dispatch (the ops term)
            continue
        if op.kind in ideal:
            ideal[op.kind] += 2.0 * op.macs / (peak_tops * 1e12) * 1e3
        megabytes[group_of.get(op.kind, "movement")] += (op.weight_elems + op.activation_elems) * bytes_per_element(precision) / 1e6
    return np.array([*ideal.values(), *megabytes.values(), float(count), 1.0])


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Non-negative least squares (Lawson-Hanson active set). scipy.optimize.nnls does the same, but
    edgekit.targets runs on devices with numpy alone, and the systems here have < 10 unknowns."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= 1e-12).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            mask = passive & (z <= 0)
            alpha = np.min(x[mask] / (x[mask] - z[mask]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


@dataclass(frozen=True)
class Calibration:
    """Fitted coefficients for one (target, unit, precision, threads); predicts ``calibrated`` latencies."""

    target: str
    unit: str
    precision: str
    threads: int | None
    peak_tops: float
    coefficients: Mapping[str, float]
    samples: int
    train_median_abs_pct_error: float

    def predict(self, ops: Iterable[CostLike]) -> Prediction:
        x = features(ops, self.peak_tops, self.precision)
        ms = float(x @ np.array([self.coefficients[name] for name in FEATURES]))
        note = f"fitted to {self.samples} measured models (median train error {self.train_median_abs_pct_error:.1f}%)"
        return Prediction(ms, "calibrated", self.target, self.unit, self.precision, notes=(note,))

    def to_json(self) -> dict:
        return {"target": self.target, "unit": self.unit, "precision": self.precision, "threads": self.threads,
                "peak_tops": self.peak_tops, "coefficients": dict(self.coefficients), "samples": self.samples,
                "train_median_abs_pct_error": self.train_median_abs_pct_error}

    @classmethod
    def from_json(cls, data: Mapping, where: str) -> "Calibration":
        try:
            coefficients = {name: float(data["coefficients"][name]) for name in FEATURES}
            return cls(str(data["target"]), str(data["unit"]), str(data["precision"]),
                       None if data["threads"] is None else int(data["threads"]), float(data["peak_tops"]),
                       coefficients, int(data["samples"]), float(data["train_median_abs_pct_error"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TargetError(f"{where}: not an edgekit latency calibration ({type(exc).__name__}: {exc})") from exc

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TargetError(f"{path}: cannot read the calibration ({exc})") from exc
        return cls.from_json(data, str(path))


def fit_calibration(
    models: Sequence[Iterable[CostLike]], measured_ms: Sequence[float], target: Target, unit_name: str,
    precision: str, threads: int | None = None,
) -> Calibration:
    """Fit the coefficients to measured medians. Relative errors are what matter, so each model's row
    is weighted by 1 / its latency (small models count as much as large ones)."""
    if len(models) != len(measured_ms) or len(models) < len(FEATURES):
        raise TargetError(f"calibration needs at least {len(FEATURES)} measured models, got {len(measured_ms)}")
    unit = target.unit(unit_name)
    peak, _ = effective_peak(unit, precision, threads)
    if peak is None:
        raise TargetError(f"unit {unit.name} of {target.name} has no peak to calibrate against")
    x = np.stack([features(ops, peak, precision) for ops in models])
    y = np.asarray(measured_ms, dtype=np.float64)
    weights = 1.0 / y
    coefficients = nnls(x * weights[:, None], y * weights)
    errors = np.abs(x @ coefficients - y) / y * 100
    return Calibration(target.name, unit.name, precision, threads, peak, dict(zip(FEATURES, map(float, coefficients))),
                       len(y), float(np.median(errors)))
