"""Rules about the test suite itself: speed goals live in benchmarks/, never in unit tests."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_times_code_with_a_clock():
    """A speed assertion fails on a loaded machine (one did: 61.7 ms against a 50 ms limit).

    perf_counter/process_time measure speed; time.monotonic stays allowed for deadlines and for checking
    that a timeout fires (tests/test_agent.py), which is behaviour, not speed.
    """
    clock = re.compile(r"\btime\.(perf_counter|process_time)(_ns)?\(")
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if clock.search(line)
    ]
    assert not offenders, f"timed code in tests (move it to benchmarks/): {offenders}"
