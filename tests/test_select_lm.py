"""``edgekit select --model slm-encdec,... --budget-first-token-ms / --budget-tokens-per-s``: language-model
bundles chosen by a generation budget, speed measured on the host, accuracy = the measured task score."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from edgekit.cli import main  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_generation_budget_picks_the_most_accurate_fitting_bundle(cache, capsys):
    base = ["select", "--model", "slm-encdec", "--target", "host", "--precision", "fp32", "--json"]
    assert main([*base, "--budget-first-token-ms", "1000", "--budget-tokens-per-s", "10"]) == 0
    data = json.loads(capsys.readouterr().out)
    formats = {c["format"] for c in data["candidates"]}
    assert formats == {"onnx", "tflite"} and all(c["speed_source"] == "measured" for c in data["candidates"])
    best = data["best"]
    assert best["accuracy"] == pytest.approx(0.965) and best["accuracy_source"].startswith("exact match on 200 held-out")
    assert best["tokens_per_s"] == max(c["tokens_per_s"] for c in data["candidates"] if c["accuracy"] == best["accuracy"])
    assert main([*base, "--budget-first-token-ms", "0.0001"]) == 1  # from the cache: no export again
    out = capsys.readouterr().out
    assert "no candidate meets the budget: the fastest first token is slm-encdec" in out


@pytest.mark.parametrize("args, message", [
    (["--model", "tests.fixtures.tiny_models:tiny_cnn", "--budget-tokens-per-s", "5"], "not a language model"),
    (["--model", "slm-encdec", "--budget-first-token-ms", "-1"], "--budget-first-token-ms must be > 0, got -1"),
    (["--model", "slm-encdec"], "pass --budget-ms (or, for a language model, --budget-first-token-ms"),
])
def test_generation_budget_errors_are_one_line(cache, capsys, args, message):
    assert main(["select", *args, "--target", "host"]) == 2
    assert message in capsys.readouterr().err
