"""What ``edgekit compress`` measured: one row per step, as a table and as JSON (the manifest's
``compression`` record and ``--json``).

Every step is exported through the pipeline and its row read from that bundle: the file size, mIoU
through the runtime on the eval data, the host latency *measured* in the format's runtime (1 thread,
median) and the target latency *modeled* (or calibrated) by the target's latency model; MACs,
parameters and non-zero parameters come from the torch module of the step.

Example:
    >>> step = StepReport("dense", 1_000_000, 5000, 5000, 20_480, 0.75, 1.25, "measured", None, None, "fp32")
    >>> report = CompressReport((step,), settings={"prune": 0.5})
    >>> report.table()[0][:3], report.drop_points
    (['dense', '1.00 M', '5.0 k'], 0.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

__all__ = ["StepReport", "CompressReport", "COLUMNS"]

COLUMNS = ["step", "MACs", "params", "non-zero", "file", "mIoU", "host ms (measured)", "target ms"]


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def _size(n: int) -> str:
    return f"{n / 2 ** 20:.2f} MB" if n >= 2 ** 20 else f"{n / 2 ** 10:.1f} KB"


@dataclass(frozen=True)
class StepReport:
    """One step: what the model costs and how well it segments after it. ``miou`` is a fraction."""

    step: str
    macs: int
    params: int
    nonzero: int
    file_bytes: int
    miou: float
    host_ms: float | None
    host_source: str | None  # "measured" (1 thread, median, in the bundle's runtime on this host)
    target_ms: float | None
    target_source: str | None  # "modeled" or "calibrated" (the target's latency model), None: no unit runs it
    precision: str = "fp32"
    target: str | None = None
    unit: str | None = None

    def row(self) -> list[str]:
        host = "-" if self.host_ms is None else f"{self.host_ms:.3f}"
        where = f" {self.target}/{self.unit}" if self.unit else ""
        target = "-" if self.target_ms is None else f"{self.target_ms:.3f} ({self.target_source}{where})"
        return [self.step, _count(self.macs), _count(self.params), _count(self.nonzero), _size(self.file_bytes),
                f"{100 * self.miou:.2f}", host, target]


@dataclass(frozen=True)
class CompressReport:
    """The steps in order (the first is the dense model, the last the one written), the settings, and the
    eval data the mIoU was measured on."""

    steps: tuple[StepReport, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dense(self) -> StepReport:
        return self.steps[0]

    @property
    def final(self) -> StepReport:
        return self.steps[-1]

    @property
    def drop_points(self) -> float:
        """mIoU points lost from the dense model to the written one."""
        return 100 * (self.dense.miou - self.final.miou)

    def table(self) -> list[list[str]]:
        return [step.row() for step in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {**dict(self.settings), "steps": [asdict(step) for step in self.steps], "data": dict(self.data),
                "miou_dense": self.dense.miou, "miou_final": self.final.miou, "drop_points": self.drop_points}
