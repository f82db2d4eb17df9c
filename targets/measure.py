"""Measure a session's latency on this machine: warm-up, then timed runs, then percentiles.

Every number here is *measured*; the latency models elsewhere in edgekit.targets are *modeled*.

Example:
    >>> import numpy as np
    >>> from edgekit.runtimes.session import Session
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> class Echo(Session):
    ...     def _run(self, feeds):
    ...         return {"y": feeds["x"]}
    >>> echo = Echo((TensorSpec("x", (1,)),), (TensorSpec("y", (1,)),))
    >>> stats = measure_latency(echo, {"x": np.zeros(1, np.float32)}, warmup=2, runs=5)
    >>> stats.runs, stats.source
    (5, 'measured')
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.session import Session

__all__ = ["LatencyStats", "measure_latency", "summarize"]


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles in milliseconds over ``runs`` timed calls after ``warmup`` untimed ones."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    batch: int = 1
    source: str = "measured"

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch * 1000.0 / self.p50_ms if self.p50_ms > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["throughput_per_s"] = round(self.throughput, 3)
        return data


def summarize(times_ms: np.ndarray, warmup: int, batch: int = 1) -> LatencyStats:
    """Percentiles of a vector of timings in milliseconds."""
    times = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(times.mean()), float(times.min()), len(times), warmup, batch)


def measure_latency(
    session: Session | Callable[[], Any],
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    warmup: int = 10,
    runs: int = 50,
    batch: int = 1,
) -> LatencyStats:
    """Time ``session.run(feeds)`` (or a zero-argument callable) ``runs`` times after ``warmup`` calls."""
    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    call = session if feeds is None else (lambda: session.run(feeds))
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    clock = time.perf_counter
    for i in range(runs):
        start = clock()
        call()
        times[i] = (clock() - start) * 1000.0
    return summarize(times, warmup, batch)
