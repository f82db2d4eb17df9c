"""Option ranges: budgets finite and > 0, tolerances >= 0, the accuracy drop in [0, 1], threads >= 1;
usage errors (exit 2), as JSON objects under --json, before any work."""

from __future__ import annotations

import json

import pytest

from edgekit.cli import main

from .helpers import cli_error, snapshot

CASES = [
    (["select", "--target", "rpi5", "--budget-ms", "inf"], "--budget-ms must be a number > 0, got inf"),
    (["select", "--target", "rpi5", "--budget-ms", "nan"], "--budget-ms must be a number > 0, got nan"),
    (["select", "--target", "rpi5", "--budget-ms", "-1"], "--budget-ms must be a number > 0, got -1"),
    (["select", "--target", "rpi5", "--budget-ms", "0"], "--budget-ms must be a number > 0, got 0"),
    (["select", "--target", "rpi5", "--budget-ms", "5", "--memory-mb", "inf"], "--memory-mb must be a number > 0, got inf"),
    (["select", "--target", "rpi5", "--budget-ms", "5", "--memory-mb", "-3"], "--memory-mb must be a number > 0, got -3"),
    (["select", "--target", "rpi5", "--budget-ms", "5", "--threads", "0"], "'--threads'"),
    (["select", "--target", "rpi5", "--budget-ms", "5", "--threads", "-1"], "'--threads'"),
    (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "o", "--atol", "-1"],
     "Invalid value for '--atol': expected a finite number >= 0, got -1"),
    (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "o", "--atol", "nan"],
     "Invalid value for '--atol': expected a finite number >= 0, got nan"),
    (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "o", "--rtol", "-0.5"],
     "Invalid value for '--rtol': expected a finite number >= 0, got -0.5"),
    (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "o", "--max-accuracy-drop", "-1"],
     "Invalid value for '--max-accuracy-drop': expected a finite number in [0, 1], got -1"),
    (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "o", "--max-accuracy-drop", "1.5"],
     "Invalid value for '--max-accuracy-drop': expected a finite number in [0, 1], got 1.5"),
    (["export", "--model", "ofa-mbv3", "--out", "o", "--budget-ms", "inf"],
     "--budget-ms must be a number > 0, got inf"),
    (["calibrate", "--threads", "0"], "'--threads'"),
    (["lut", "build", "--threads", "0"], "'--threads'"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[-2:]) + f" {a[0]}" for a, _ in CASES])
def test_an_option_out_of_range_is_a_usage_error_in_json_too(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    before = snapshot(tmp_path)
    cli_error(capsys, [*args, "--json"], 2, message)
    assert snapshot(tmp_path) == before


def test_the_search_summary_never_writes_infinity(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["select", "--target", "rpi5", "--budget-ms", "inf", "--json"]) == 2
    text = capsys.readouterr().out
    assert "Infinity" not in text and json.loads(text)["error"]["type"] == "UsageError"
