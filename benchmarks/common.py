"""Shared by the benchmark scripts: interleaved timing, a printed table, and a JSON result file.

Timing discipline (docs/ARCHITECTURE.md, "Measuring"): fixed thread counts, warm-up, and interleaved rounds so that
noise from the shared machine hits every contender alike; report medians and ratios.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved_times(
    contenders: Mapping[str, Callable[[], Any]], *, rounds: int, warmup: int = 20, calls_per_round: int = 1
) -> dict[str, np.ndarray]:
    """Per-call milliseconds of each contender, alternating contenders in every round (order rotates)."""
    from edgekit.targets.measure import interleaved_ms

    return interleaved_ms(contenders, rounds=rounds, warmup=warmup, calls_per_round=calls_per_round)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print(title)
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def write_result(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically, with machine facts attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "processor": platform.processor()},
        **data,
    }
    from edgekit.runtimes.files import atomic_write_text

    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path
