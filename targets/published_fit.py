"""A latency model fitted to published measurements of one unit x runtime x precision (see edgekit.targets.published).

``ms = sum(coefficient x feature)`` over the model's features: ``roofline_ms`` (the datasheet roofline's
time without its per-op overhead: compute at the unit's peak and default efficiency per op kind, or memory
traffic, whichever is longer, per op), ``ops`` (ops the unit executes: element-wise ops and reshapes are
fused away on accelerators, views are free everywhere) and, for a unit whose peak at that precision is not
published, ``dense_gmac`` (GMACs of convolutions and matmuls), ``dw_gmac`` (of depthwise convolutions) and
``gmac`` (both). A coefficient of roofline_ms is 1 / (the share of the assumed efficiency it reaches).
Its predictions are labelled ``calibrated (published)``; ``cv_median_error`` is the median ratio error
(x1.0 = exact) of leave-one-model-out predictions over the points it was fitted to.

Example:
    >>> fit = PublishedFit("tensorrt", "fp16", {"gmac": 0.5, "ops": 0.02}, points=3, models=("a", "b", "c"),
    ...                    median_error=1.05, cv_median_error=1.2)
    >>> fit.predict_features({"gmac": 2.0, "ops": 1.0})
    1.02
    >>> fit.label()
    'fitted to 3 published points (a, b, c): median error x1.20 cross-validated'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .opkinds import COMPUTE_KINDS

__all__ = ["FEATURES", "PublishedFit", "features_of", "user_fits_file", "user_fits", "load_user_fit"]

FEATURES = ("roofline_ms", "dense_gmac", "dw_gmac", "gmac", "ops")
_FUSED_ON_ACCELERATORS = ("elementwise", "data_movement", "view")


def features_of(kinds: Mapping[str, Mapping[str, float]], unit_kind: str) -> dict[str, float]:
    """The features of a model given per op kind (``{kind: {"ops": n, "macs": m}}``) on a unit of ``unit_kind``.

    Example:
        >>> features_of({"conv": {"ops": 2, "macs": 3e9}, "view": {"ops": 5, "macs": 0}}, "cpu")
        {'dense_gmac': 3.0, 'dw_gmac': 0.0, 'gmac': 3.0, 'ops': 2.0}
    """
    dense = sum(row["macs"] for kind, row in kinds.items() if kind in COMPUTE_KINDS and kind != "depthwise_conv") / 1e9
    depthwise = kinds.get("depthwise_conv", {}).get("macs", 0) / 1e9
    skipped = _FUSED_ON_ACCELERATORS if unit_kind != "cpu" else ("view",)
    ops = sum(row["ops"] for kind, row in kinds.items() if kind not in skipped)
    return {"dense_gmac": dense, "dw_gmac": depthwise, "gmac": dense + depthwise, "ops": float(ops)}


@dataclass(frozen=True)
class PublishedFit:
    """Fitted ms per feature unit for one (runtime, precision) of a unit, with its fit error and sources."""

    runtime: str
    precision: str
    coefficients: Mapping[str, float]
    points: int
    models: tuple[str, ...]
    median_error: float
    cv_median_error: float | None = None
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "coefficients", tuple(sorted(dict(self.coefficients).items())))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "sources", tuple(self.sources))

    @property
    def terms(self) -> dict[str, float]:
        return dict(self.coefficients)  # type: ignore[arg-type]

    def predict_features(self, features: Mapping[str, float]) -> float:
        return sum(value * features[name] for name, value in self.terms.items())

    @property
    def error(self) -> float:
        """The error to plan with: cross-validated when there is one, else the in-sample one."""
        return self.cv_median_error if self.cv_median_error is not None else self.median_error

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["coefficients"] = self.terms
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "PublishedFit":
        return cls(**{**data, "models": tuple(data["models"]), "sources": tuple(data["sources"])})

    def label(self) -> str:
        """One line: how many points, which models, and the error."""
        how = "cross-validated" if self.cv_median_error is not None else "in-sample only (too few models to cross-validate)"
        return (f"fitted to {self.points} published point{'s' * (self.points != 1)} ({', '.join(self.models)}): "
                f"median error x{self.error:.2f} {how}")


def user_fits_file(directory: Path) -> Path:
    """Where ``edgekit truth add`` keeps the fits refitted with your points (in the tables folder).

    Example:
        >>> user_fits_file(Path("cache")).as_posix()
        'cache/truth/fits.json'
    """
    return Path(directory) / "truth" / "fits.json"


def user_fits(directory: Path, target: str, unit: str) -> list[PublishedFit]:
    """The fits refitted with your points (``edgekit truth add``) for ``unit`` of ``target``."""
    path = user_fits_file(directory)
    if not path.is_file():
        return []
    prefix = f"{target}/{unit}/"
    return [PublishedFit.from_json(fit) for key, fit in sorted(json.loads(path.read_text()).items()) if key.startswith(prefix)]


def load_user_fit(directory: Path, target: str, unit: str, runtime: str, precision: str) -> PublishedFit | None:
    """The fit refitted with your points for this group (``edgekit truth add``), or None."""
    return next((f for f in user_fits(directory, target, unit) if (f.runtime, f.precision) == (runtime, precision)), None)
