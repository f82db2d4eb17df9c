"""One entry point for a latency number, labelled with where it came from.

Order of preference for (target, unit, precision, threads): a measurement of this very model
(``measured``), else the target's fitted per-op calibration (``calibrated``), else the roofline over
the target's published numbers (``modeled``). Calibrations live beside the latency store, one JSON
file per (target, unit, precision, threads), written by ``edgekit calibrate``.

Example:
    >>> import tempfile, pathlib
    >>> from edgekit.targets import load_target
    >>> from edgekit.targets.latency import OpCost
    >>> ops = [OpCost("conv", 10_000_000, 1000, 100_000)]
    >>> predict_model(ops, load_target("rpi5"), directory=pathlib.Path(tempfile.mkdtemp())).source
    'modeled'
    >>> predict_model(ops, load_target("rpi5"), measured_ms=3.2).ms
    3.2
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .calibrated import Calibration
from .latency import CostLike, Prediction, predict_ms
from .target import Target

__all__ = ["calibration_file", "table_file", "load_calibration", "predict_model", "tables_dir"]


def tables_dir() -> Path:
    """The directory of fitted calibrations and block tables: beside the latency store."""
    from .store import default_store_path

    return default_store_path().parent


def calibration_file(directory: Path, target: str, unit: str, precision: str, threads: int | None) -> Path:
    return Path(directory) / "calibrations" / f"{target}-{unit}-{precision}-t{threads or 'all'}.json"


def table_file(directory: Path, space: str, target: str, precision: str, threads: int | None) -> Path:
    """Where the block table of ``space`` on ``target`` lives (``edgekit lut build|import``)."""
    return Path(directory) / "tables" / f"{space}-{target}-{precision}-t{threads or 'all'}.json"


def load_calibration(target: Target, unit: str, precision: str, threads: int | None, directory: Path | None = None) -> Calibration | None:
    """The saved calibration for these settings, or None when there is none."""
    path = calibration_file(directory or tables_dir(), target.name, unit, precision, threads)
    return Calibration.load(path) if path.is_file() else None


def predict_model(
    ops: Iterable[CostLike], target: Target, unit: str | None = None, precision: str = "fp32", threads: int | None = None,
    *, directory: Path | None = None, measured_ms: float | None = None,
) -> Prediction:
    """The best available latency for a model given by its op costs."""
    unit = unit or target.default_unit
    if measured_ms is not None:
        return Prediction(float(measured_ms), "measured", target.name, unit, precision, notes=("this model, timed on the device",))
    ops = list(ops)
    calibration = load_calibration(target, unit, precision, threads, directory)
    if calibration is not None:
        return calibration.predict(ops)
    return predict_ms(ops, target, unit, precision, threads)
