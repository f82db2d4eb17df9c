"""generate: bundles that are not language models, bad ids and option values are one line each."""

from __future__ import annotations

import pytest

from .helpers import cli_error, snapshot


@pytest.mark.parametrize("extra", [["--text", "hi"], ["--input-ids", "1,2,3"], ["--input-ids", "1,x"]])
def test_generate_on_a_bundle_that_is_not_a_language_model(tiny_bundle, tmp_path, monkeypatch, capsys, extra):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    cli_error(capsys, ["generate", str(tiny_bundle), *extra], 2, "is not a generation task (seq2seq or causal-lm)")
    assert snapshot(tmp_path) == before


def test_generate_on_a_missing_bundle(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli_error(capsys, ["generate", "nowhere", "--text", "hi"], 1, "nowhere")


def test_generate_threads_zero_is_a_usage_error(tiny_bundle, capsys):
    cli_error(capsys, ["generate", str(tiny_bundle), "--text", "hi", "--threads", "0", "--json"], 2, "'--threads'")
