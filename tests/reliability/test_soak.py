"""Soak, short: 2,000 runs of one Session grow resident memory by less than 5 MB
(benchmarks/soak.py runs 10,000 and records the numbers)."""

from __future__ import annotations

import json

import pytest

from .helpers import load_benchmark

pytest.importorskip("onnx")


def test_two_thousand_runs_of_one_session_do_not_grow_memory(tmp_path, monkeypatch):
    soak = load_benchmark("soak")
    written = {}
    monkeypatch.setattr(soak, "write_result", lambda name, data: written.update(data))
    assert soak.main(["--runs", "2000", "--warmup", "200"]) == 0
    assert written["runs"] == 2000 and written["growth_mb"] < 5.0
    json.dumps(written)
