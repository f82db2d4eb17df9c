"""The analytical latency model: a roofline per compute unit and precision, from the target's TOML.

For each op: ``time = max(2 x MACs / (peak x efficiency(kind)), bytes / bandwidth) + overhead``, where
peak is the unit's dense peak at that precision and bandwidth the device's memory bandwidth. It needs
no measurement and works for every target whose unit has a published peak; its results are labelled
``modeled``. Where a number is not published the prediction says so instead of inventing one.

The efficiencies and per-op overheads below are starting assumptions, not measurements (sustained
throughput is far below marketing peaks); :mod:`edgekit.targets.calibrated` replaces them with fitted
values wherever measurements exist. A unit's TOML ``efficiency`` table overrides them per op kind.

Example:
    >>> from edgekit.targets import load_target
    >>> ops = [OpCost("conv", macs=50_000_000, weight_elems=100_000, activation_elems=2_000_000)]
    >>> p = predict_ms(ops, load_target("jetson"), "gpu", "fp16")
    >>> p.source, p.ms > 0, p.unit
    ('modeled', True, 'gpu')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from edgekit.runtimes.errors import TargetError
from edgekit.runtimes.precision import bytes_per_element

from .opkinds import COMPUTE_KINDS
from .target import ComputeUnit, Target

__all__ = ["OpCost", "CostLike", "Prediction", "predict_ms", "effective_peak", "runnable_unit", "DEFAULT_EFFICIENCY",
           "DEFAULT_OVERHEAD_MS"]

# Fraction of the dense peak that each kind of compute op sustains, by unit kind (assumptions).
DEFAULT_EFFICIENCY: Mapping[str, Mapping[str, float]] = {
    "cpu": {"conv": 0.35, "depthwise_conv": 0.08, "matmul": 0.45},
    "gpu": {"conv": 0.40, "depthwise_conv": 0.05, "matmul": 0.50},
    "dla": {"conv": 0.50, "depthwise_conv": 0.10, "matmul": 0.20},
    "npu": {"conv": 0.50, "depthwise_conv": 0.15, "matmul": 0.40},
    "tpu": {"conv": 0.50, "depthwise_conv": 0.15, "matmul": 0.40},
}
# Fixed cost per executed op in ms (launch / dispatch), by unit kind (assumptions).
DEFAULT_OVERHEAD_MS: Mapping[str, float] = {"cpu": 0.004, "gpu": 0.010, "dla": 0.020, "npu": 0.010, "tpu": 0.010}
# Accelerator compilers fuse element-wise ops and reshapes into the neighbouring compute op.
_FUSED_ON_ACCELERATORS = ("elementwise", "data_movement", "view")


class CostLike(Protocol):
    kind: str
    macs: int
    weight_elems: int
    activation_elems: int


@dataclass(frozen=True)
class OpCost:
    """The work of one op, independent of precision (see exporters.graph_stats.NodeCost)."""

    kind: str
    macs: int
    weight_elems: int = 0
    activation_elems: int = 0
    name: str = ""  # the graph node's name, when it has one (op coverage moves nodes by name)


@dataclass(frozen=True)
class Prediction:
    """A latency in ms with where it came from: ``modeled``, ``calibrated`` or ``measured``.

    ``ms`` is None when the target lacks a number the model needs (``notes`` says which).
    """

    ms: float | None
    source: str
    target: str
    unit: str
    precision: str
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"ms": self.ms, "source": self.source, "target": self.target, "unit": self.unit,
                "precision": self.precision, "compute_ms": self.compute_ms, "memory_ms": self.memory_ms,
                "overhead_ms": self.overhead_ms, "notes": list(self.notes)}


def effective_peak(unit, precision: str, threads: int | None = None) -> tuple[float | None, tuple[str, ...]]:
    """Peak T(FL)OPS the model uses for ``unit`` at ``precision``: the published peak, else the fp32 one
    (no speed-up assumed), scaled to ``threads`` of the unit's cores for CPUs."""
    notes: list[str] = []
    peak = unit.peak.get(precision)
    if peak is None:
        peak = unit.peak.get("fp32")
        if peak is None:
            return None, (f"no published {precision} peak for unit {unit.name}",)
        notes.append(f"no published {precision} peak: fp32 peak used (assumes no speed-up)")
    if threads is not None and unit.kind == "cpu" and unit.cores:
        peak = peak * min(threads, unit.cores) / unit.cores
    return peak, tuple(notes)


def runnable_unit(target: Target, unit_name: str | None, precision: str) -> ComputeUnit:
    """The unit ``unit_name`` of ``target`` (default: its default unit); TargetError when it does not run ``precision``.

    Example:
        >>> from edgekit.targets import load_target
        >>> runnable_unit(load_target("jetson"), "cpu", "fp16")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.TargetError: unit 'cpu' of jetson-orin-nano does not run fp16; it runs fp32, int8
    """
    unit = target.unit(unit_name or target.default_unit)
    if precision not in unit.precisions:
        raise TargetError(
            f"unit {unit.name!r} of {target.name} does not run {precision}; it runs {', '.join(unit.precisions) or 'nothing published'}"
        )
    return unit


def predict_ms(
    ops: Iterable[CostLike], target: Target, unit_name: str | None = None, precision: str = "fp32", threads: int | None = None
) -> Prediction:
    """Roofline latency of ``ops`` on one unit of ``target`` at ``precision`` (batch as in the ops).

    ``threads`` limits a CPU unit to that many of its cores (default: all of them).
    """
    unit = runnable_unit(target, unit_name, precision)
    peak, peak_notes = effective_peak(unit, precision, threads)
    notes = list(peak_notes)
    if peak is None:
        return Prediction(None, "modeled", target.name, unit.name, precision, notes=tuple(notes))
    bandwidth = target.memory_bandwidth_gbps
    if bandwidth is None:
        notes.append("memory bandwidth not published: compute-bound estimate only")
    efficiency = {**DEFAULT_EFFICIENCY.get(unit.kind, DEFAULT_EFFICIENCY["cpu"]), **dict(unit.efficiency)}
    overhead = DEFAULT_OVERHEAD_MS.get(unit.kind, 0.01)
    fused = unit.kind != "cpu"
    element_bytes = bytes_per_element(precision)
    compute_total = memory_total = overhead_total = total = 0.0
    for op in ops:
        if fused and op.kind in _FUSED_ON_ACCELERATORS:
            continue
        compute = 0.0
        if op.kind in COMPUTE_KINDS and op.macs:
            compute = 2.0 * op.macs / (peak * 1e12 * efficiency.get(op.kind, 0.3)) * 1e3
        memory = 0.0
        if bandwidth and op.kind != "view":  # views move no data
            memory = (op.weight_elems + op.activation_elems) * element_bytes / (bandwidth * 1e9) * 1e3
        compute_total += compute
        memory_total += memory
        overhead_total += overhead
        total += max(compute, memory) + overhead
    return Prediction(total, "modeled", target.name, unit.name, precision, compute_total, memory_total, overhead_total, tuple(notes))
