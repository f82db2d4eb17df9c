"""Device truth: published (or your own) latencies of known models on real devices, as checked data.

A points file holds one point a line (JSONL) or a row (CSV with a header): ``target`` (a bundled target's
name or alias), ``unit``, ``runtime``, ``precision``, ``model``, ``ms`` (batch-1 latency), and optionally
``resolution`` (square input side, default 224), ``batch`` (1), ``threads`` (null: not stated / all cores)
and ``source`` (where the number comes from: the quoted row, the URL, caveats). The bundled set,
``truth/published.jsonl``, was collected from public sources (``truth/PROVENANCE.md``).

:func:`load_points` checks every point and splits them: ``comparable`` points are timed with a runtime
the unit runs, at a precision it runs, so edgekit's model of that unit can be held against them;
``apart`` points were timed with another runtime (ncnn, TensorFlow, ...) or precision and are shown
apart, never fitted (the runtime alone changes latency 2-4x on the same chip).

Example:
    >>> points = load_points(published_path())
    >>> len(points.comparable) > 30, len(points.apart) > 30
    (True, True)
    >>> p = points.comparable[0]
    >>> p.target, p.unit, p.runtime, p.precision, p.model, p.ms
    ('jetson-agx-orin', 'gpu', 'tensorrt', 'int8', 'resnet50', 0.6403)
    >>> sorted({reason for _, reason in points.apart})[0]
    "runtime 'ncnn' is not one the unit runs (litert, onnxruntime)"
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgekit.runtimes.errors import TargetError
from edgekit.runtimes.formats import get_format
from edgekit.runtimes.precision import PRECISIONS

from . import load_target, target_names
from .target import ComputeUnit

__all__ = ["Point", "PointSet", "load_points", "parse_points", "published_path", "unit_runtimes", "point_key"]

_REQUIRED = ("target", "unit", "runtime", "precision", "model", "ms")
_OPTIONAL = ("resolution", "batch", "threads", "source")


@dataclass(frozen=True)
class Point:
    """One latency of ``model`` at ``resolution`` on ``unit`` of ``target`` with ``runtime`` at ``precision``."""

    target: str
    unit: str
    runtime: str
    precision: str
    model: str
    ms: float
    resolution: int = 224
    batch: int = 1
    threads: int | None = None
    source: Any = None
    origin: str = ""  # file:line it was read from

    @property
    def group(self) -> tuple[str, str, str, str]:
        """What a calibration is fitted per: (target, unit, runtime, precision)."""
        return (self.target, self.unit, self.runtime, self.precision)


@dataclass(frozen=True)
class PointSet:
    """Checked points: ``comparable`` with edgekit's model of their unit, ``apart`` with the reason why not."""

    comparable: tuple[Point, ...]
    apart: tuple[tuple[Point, str], ...] = field(default=())

    def __add__(self, other: "PointSet") -> "PointSet":
        return PointSet(self.comparable + other.comparable, self.apart + other.apart)


def published_path() -> Path:
    """The bundled published points (``targets/truth/published.jsonl``)."""
    return Path(__file__).resolve().parent / "truth" / "published.jsonl"


def point_key(point: Point) -> str:
    """The op-cost key of a point's model: ``model@resolution``.

    Example:
        >>> point_key(Point("raspberry-pi-5", "cpu", "litert", "fp16", "resnet18", 55.3))
        'resnet18@224'
    """
    return f"{point.model}@{point.resolution}"


def unit_runtimes(unit: ComputeUnit) -> tuple[str, ...]:
    """The runtimes that run models on ``unit``: its own, then the one of each format it loads.

    Example:
        >>> unit_runtimes(load_target("sd8gen3").unit("npu"))
        ('qnn', 'onnxruntime', 'litert')
    """
    found = [unit.runtime]
    for fmt in unit.formats:
        runtime = get_format(fmt).runtime
        if runtime not in found:
            found.append(runtime)
    return tuple(found)


def _fail(where: str, message: str) -> TargetError:
    return TargetError(f"{where}: {message}")


def _count(where: str, key: str, value: Any, default: int | None) -> int | None:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(where, f"{key}: expected a whole number >= 1, got {value!r}") from None
    if not number.is_integer() or number < 1:
        raise _fail(where, f"{key}: expected a whole number >= 1, got {value!r}")
    return int(number)


def _check(row: Mapping[str, Any], where: str) -> tuple[Point, str | None]:
    """One row as a Point, and why it is apart (None when comparable); TargetError on a bad field."""
    for key in _REQUIRED:
        if row.get(key) in (None, ""):
            raise _fail(where, f"missing field {key!r}; a point needs {', '.join(_REQUIRED)}")
    unknown = sorted(set(row) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    try:
        target = load_target(str(row["target"]))
    except TargetError:
        raise _fail(where, f"unknown target {row['target']!r}; known: {', '.join(target_names())}") from None
    names = [u.name for u in target.units]
    if str(row["unit"]).lower() not in names:
        raise _fail(where, f"target {target.name} has no unit {row['unit']!r}; units: {', '.join(names)}")
    unit = target.unit(str(row["unit"]))
    precision = str(row["precision"]).lower()
    if precision not in PRECISIONS:
        raise _fail(where, f"precision: unknown {row['precision']!r}; known: {', '.join(PRECISIONS)}")
    try:
        ms = float(row["ms"])
    except (TypeError, ValueError):
        ms = math.nan
    if not (math.isfinite(ms) and ms > 0):
        raise _fail(where, f"ms: expected a positive number of milliseconds, got {row['ms']!r}")
    point = Point(
        target=target.name, unit=unit.name, runtime=str(row["runtime"]).lower(), precision=precision,
        model=str(row["model"]), ms=ms, resolution=_count(where, "resolution", row.get("resolution"), 224),  # type: ignore[arg-type]
        batch=_count(where, "batch", row.get("batch"), 1), threads=_count(where, "threads", row.get("threads"), None),  # type: ignore[arg-type]
        source=row.get("source"), origin=where,
    )
    runs = unit_runtimes(unit)
    if point.runtime not in runs:
        return point, f"runtime {point.runtime!r} is not one the unit runs ({', '.join(runs)})"
    if precision not in unit.precisions:
        return point, f"unit {unit.name} of {target.name} does not run {precision} ({', '.join(unit.precisions)})"
    if point.batch != 1:
        return point, f"batch {point.batch}: edgekit's model is batch 1"
    return point, None


def parse_points(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> PointSet:
    """Check ``(where, row)`` pairs into a :class:`PointSet`.

    Example:
        >>> row = {"target": "rpi9", "unit": "cpu", "runtime": "litert", "precision": "fp32", "model": "m", "ms": 1}
        >>> parse_points([("my.csv:2", row)])
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.TargetError: my.csv:2: unknown target 'rpi9'; known: coral-edgetpu, host, jetson-agx-orin, jetson-nano, jetson-orin-nano, jetson-orin-nx, pixel-8, raspberry-pi-4, raspberry-pi-5, snapdragon-8-gen-3
    """
    comparable, apart = [], []
    for where, row in rows:
        point, reason = _check(row, where)
        if reason is None:
            comparable.append(point)
        else:
            apart.append((point, reason))
    return PointSet(tuple(comparable), tuple(apart))


def _rows(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".csv":
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            yield f"{path}:{number}", {k: v for k, v in row.items() if k is not None}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TargetError(f"{path}:{number}: not a JSON object: {exc.msg}") from None
        if not isinstance(row, dict):
            raise TargetError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{number}", row


def load_points(path: str | Path) -> PointSet:
    """Read and check a points file (``.jsonl``, or ``.csv`` with a header row); TargetError names file:line and field."""
    return parse_points(_rows(Path(path)))
