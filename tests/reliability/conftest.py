"""Counts the reliability cases in the summary line of ``pytest tests/reliability``."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    passed = [r for r in terminalreporter.stats.get("passed", []) if "tests/reliability/" in r.nodeid]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "tests/reliability/" in r.nodeid]
    if passed or failed:
        terminalreporter.write_line(f"reliability cases: {len(passed)} passed, {len(failed)} failed")
