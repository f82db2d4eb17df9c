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
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.session import Session

__all__ = ["LatencyStats", "GenerationStats", "measure_latency", "measure_interleaved", "interleaved_ms", "measure_generation",
           "measure_generation_interleaved", "summarize",
           "fixed_prompt"]


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
        """Samples per second over the timed runs: ``batch * runs / total time`` (inferences/s at batch 1)."""
        return self.batch * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    @property
    def throughput_unit(self) -> str:
        return "inferences/s" if self.batch == 1 else "samples/s"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["throughput_per_s"] = round(self.throughput, 3)
        data["throughput_unit"] = self.throughput_unit
        return data


def summarize(times_ms: np.ndarray, warmup: int, batch: int = 1) -> LatencyStats:
    """Percentiles of a vector of timings in milliseconds."""
    times = np.asarray(times_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(times.mean()), float(times.min()), len(times), warmup, batch)


def _check_runs(runs: int, warmup: int) -> None:
    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")


def measure_latency(
    session: Session | Callable[[], Any],
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    warmup: int = 10,
    runs: int = 50,
    batch: int = 1,
) -> LatencyStats:
    """Time ``session.run(feeds)`` (or a zero-argument callable) ``runs`` times after ``warmup`` calls."""
    _check_runs(runs, warmup)
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


def interleaved_ms(
    calls: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 10, calls_per_round: int = 1
) -> dict[str, np.ndarray]:
    """Per-call milliseconds of each zero-argument callable over ``rounds`` interleaved rounds (the order
    rotates each round), after ``warmup`` untimed rounds, so that drift on a shared machine hits all alike.

    Example:
        >>> times = interleaved_ms({"a": lambda: None, "b": lambda: None}, rounds=4, warmup=1)
        >>> sorted(times), times["a"].shape
        (['a', 'b'], (4,))
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    times = {name: np.empty(rounds) for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            call = calls[name]
            start = clock()
            for _ in range(calls_per_round):
                call()
            times[name][r] = (clock() - start) * 1000.0 / calls_per_round
    return times


def measure_interleaved(calls: Mapping[str, Callable[[], Any]], *, warmup: int = 10, runs: int = 50) -> dict[str, LatencyStats]:
    """:func:`interleaved_ms` summarised: one LatencyStats per callable.

    Example:
        >>> stats = measure_interleaved({"a": lambda: None, "b": lambda: sum(range(100))}, warmup=1, runs=5)
        >>> sorted(stats), stats["a"].runs
        (['a', 'b'], 5)
    """
    _check_runs(runs, warmup)
    times = interleaved_ms(calls, rounds=runs, warmup=warmup)
    return {name: summarize(values, warmup) for name, values in times.items()}


def _p50_p90(values: Sequence[float]) -> tuple[float, float]:
    p50, p90 = np.percentile(np.asarray(values, np.float64), [50, 90])
    return float(p50), float(p90)


@dataclass(frozen=True)
class GenerationStats:
    """Greedy generation of ``new_tokens`` tokens from a fixed ``input_tokens``-token prompt, ``runs`` times.

    Each pair is (p50, p90) over the runs. ``decode_ms_per_token`` is the time of one decode step (one
    new token in every one of the ``batch`` rows) after the first token.
    """

    first_token_ms: tuple[float, float]
    decode_ms_per_token: tuple[float, float]
    total_ms: tuple[float, float]
    runs: int
    warmup: int
    batch: int
    input_tokens: int
    new_tokens: int
    decoding: str = "greedy"
    source: str = "measured"

    @property
    def decode_tokens_per_s(self) -> tuple[float, float]:
        """Tokens per second while decoding (all rows), at the p50 and p90 step time."""
        return tuple(self.batch * 1000.0 / ms if ms > 0 else float("inf") for ms in self.decode_ms_per_token)

    def to_json(self) -> dict[str, Any]:
        pairs = {"first_token_ms": self.first_token_ms, "decode_ms_per_token": self.decode_ms_per_token,
                 "decode_tokens_per_s": self.decode_tokens_per_s, "total_ms": self.total_ms}
        data = {k: v for k, v in asdict(self).items() if k not in pairs}
        data.update({key: {"p50": round(p50, 4), "p90": round(p90, 4)} for key, (p50, p90) in pairs.items()})
        return data


def _timed_generation(lm: Any, input_ids: Sequence[Sequence[int]], new_tokens: int) -> tuple[float, float, float]:
    """One greedy generation forced to full length: (first token ms, decode ms per step, total ms)."""
    clock = time.perf_counter
    stamps: list[float] = []
    start = clock()
    lm.generate(input_ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=1, do_sample=False,
                on_token=lambda tokens: stamps.append(clock()))
    end = clock()
    assert len(stamps) == new_tokens, f"generated {len(stamps)} tokens, forced {new_tokens}"
    return (stamps[0] - start) * 1000.0, (stamps[-1] - stamps[0]) * 1000.0 / (len(stamps) - 1), (end - start) * 1000.0


def measure_generation(
    lm: Any, input_ids: Sequence[Sequence[int]], new_tokens: int, *, warmup: int = 3, runs: int = 20
) -> GenerationStats:
    """Time ``lm.generate`` (greedy, exactly ``new_tokens`` tokens) on the same prompt ``runs`` times after ``warmup``.

    ``lm`` is a generation session (``edgekit.runtimes.load`` of a seq2seq or causal-LM bundle).

    Example:
        >>> import edgekit.runtimes as rt                                    # doctest: +SKIP
        >>> stats = measure_generation(rt.load("out/slm"), [[40] * 16], 16)  # doctest: +SKIP
        >>> stats.first_token_ms, stats.decode_tokens_per_s                  # doctest: +SKIP
        ((1.9, 2.1), (2210.4, 2050.3))
    """
    _check_runs(runs, warmup)
    if new_tokens < 2:
        raise UsageError(f"new_tokens must be >= 2 (decode speed is timed after the first token), got {new_tokens}")
    for _ in range(warmup):
        _timed_generation(lm, input_ids, new_tokens)
    first, step, total = zip(*(_timed_generation(lm, input_ids, new_tokens) for _ in range(runs)))
    return GenerationStats(_p50_p90(first), _p50_p90(step), _p50_p90(total), runs, warmup, len(input_ids),
                           len(input_ids[0]), new_tokens)


def measure_generation_interleaved(
    lms: Mapping[str, Any], input_ids: Sequence[Sequence[int]], new_tokens: int, *, warmup: int = 3, runs: int = 20
) -> dict[str, GenerationStats]:
    """:func:`measure_generation` of several sessions, one generation of each in turn per round (A B A B), so a
    noisy neighbour slows them alike.

    Example:
        >>> import edgekit.runtimes as rt                                                       # doctest: +SKIP
        >>> stats = measure_generation_interleaved({"onnx": rt.load("b", format="onnx"),        # doctest: +SKIP
        ...                                         "tflite": rt.load("b", format="tflite")}, [[40] * 16], 16)
    """
    _check_runs(runs, warmup)
    if new_tokens < 2:
        raise UsageError(f"new_tokens must be >= 2 (decode speed is timed after the first token), got {new_tokens}")
    for _ in range(warmup):
        for lm in lms.values():
            _timed_generation(lm, input_ids, new_tokens)
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in lms}
    for _ in range(runs):
        for name, lm in lms.items():
            times[name].append(_timed_generation(lm, input_ids, new_tokens))
    stats = {}
    for name, rows in times.items():
        first, step, total = zip(*rows)
        stats[name] = GenerationStats(_p50_p90(first), _p50_p90(step), _p50_p90(total), runs, warmup, len(input_ids),
                                      len(input_ids[0]), new_tokens, source="measured, interleaved")
    return stats


def fixed_prompt(lm: Any, length: int, batch: int = 1, seed: int = 0) -> list[list[int]]:
    """``batch`` copies of one seeded prompt of ``length`` ordinary token ids (above every special id)."""
    special = [int(i) for key, value in lm.generation.items() if key.endswith("token_id") and value is not None
               for i in (value if isinstance(value, (list, tuple)) else [value])]
    low = min(1 + max(special, default=-1), lm.vocab_size - 1)
    row = np.random.default_rng(seed).integers(low, lm.vocab_size, length).tolist()
    return [list(row) for _ in range(batch)]
