"""The features of a model for a published calibration (edgekit.targets.published_fit), from its op costs.

Kept apart from published_fit because the roofline feature needs edgekit.targets.latency, which needs the
target loader, which reads the fits.

Example:
    >>> from edgekit.targets import load_target
    >>> from edgekit.targets.latency import OpCost
    >>> jetson = load_target("jetson")
    >>> fit = jetson.unit("gpu").published_fit("tensorrt", "fp16")
    >>> predict_published(fit, [OpCost("conv", 10**9)], jetson, "gpu") > 0
    True
"""

from __future__ import annotations

from typing import Iterable

from .latency import predict_ms
from .published_fit import PublishedFit, features_of

__all__ = ["model_features", "predict_published"]


def model_features(ops: list, target, unit: str, precision: str) -> dict[str, float]:
    """Every feature of a model given by its op costs on ``unit`` of ``target`` at ``precision``
    (``roofline_ms`` is absent where the unit has no peak to model with).

    Example:
        >>> from edgekit.targets import load_target
        >>> from edgekit.targets.latency import OpCost
        >>> f = model_features([OpCost("conv", 10**9, 0, 0)], load_target("jetson"), "gpu", "fp16")
        >>> round(f["roofline_ms"], 4), f["gmac"], f["ops"]
        (0.2985, 1.0, 1.0)
    """
    kinds: dict[str, dict[str, float]] = {}
    for op in ops:
        row = kinds.setdefault(op.kind, {"ops": 0, "macs": 0})
        row["ops"] += 1
        row["macs"] += op.macs
    found = features_of(kinds, target.unit(unit).kind)
    roofline = predict_ms(ops, target, unit, precision)
    if roofline.ms is not None:
        found["roofline_ms"] = roofline.ms - roofline.overhead_ms
    return found


def predict_published(fit: PublishedFit, ops: Iterable, target, unit: str) -> float:
    """The latency in ms of a model given by its op costs (edgekit.targets.latency.CostLike) on ``unit`` of ``target``."""
    return fit.predict_features(model_features(list(ops), target, unit, fit.precision))
