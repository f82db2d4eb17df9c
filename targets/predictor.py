"""Latency of a model given by its op costs, labelled with where it came from (kept for its callers).

:func:`predict_model` is :func:`edgekit.targets.estimate.estimate` for a model known by its op costs
alone: the target's fitted per-op calibration (``calibrated``) if there is one, else the roofline
(``modeled``). With the model file's sha256 and a store, ``estimate`` also finds measurements. Where
calibrations and block tables live is :mod:`edgekit.targets.fitted` (re-exported here).

Example:
    >>> import tempfile, pathlib
    >>> from edgekit.targets import load_target
    >>> from edgekit.targets.latency import OpCost
    >>> ops = [OpCost("conv", 10_000_000, 1000, 100_000)]
    >>> predict_model(ops, load_target("rpi5"), directory=pathlib.Path(tempfile.mkdtemp())).source
    'modeled'
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .estimate import LatencyEstimate, estimate
from .fitted import calibration_file, load_calibration, table_file, tables_dir
from .latency import CostLike
from .target import Target

__all__ = ["calibration_file", "table_file", "load_calibration", "predict_model", "tables_dir"]


def predict_model(
    ops: Iterable[CostLike], target: Target, unit: str | None = None, precision: str = "fp32", threads: int | None = None,
    *, directory: Path | None = None,
) -> LatencyEstimate:
    """The best latency for a model given by its op costs: calibrated > modeled (see :func:`estimate`)."""
    return estimate(target, unit, precision, ops=list(ops), threads=threads, directory=directory)
