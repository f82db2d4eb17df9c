"""Checkpoints and model references from elsewhere: unreadable, missing, pickled objects, wrong contents,
bad subnet configs; one line each, nothing written."""

from __future__ import annotations

import pickle

import pytest

from .helpers import cli_error, snapshot

torch = pytest.importorskip("torch")


def _files(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(pickle.loads(pickle.dumps(print))))  # a pickled callable
    torch.save({"x": 1}, tmp_path / "dict.pt")
    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "foreign.pt")


@pytest.mark.parametrize("name,message", [
    ("garbage.pt", "checkpoint 'garbage.pt' cannot be read by torch.load: not a torch file"),
    ("missing.pt", "checkpoint 'missing.pt' does not exist"),
    ("evil.pt", "checkpoint 'evil.pt' cannot be read by torch.load"),
    ("dict.pt", "checkpoint 'dict.pt' is not a state dict of tensors (keys: ['x'])"),
    ("foreign.pt", "foreign.pt: fits no known space"),
])
def test_a_checkpoint_that_cannot_be_used_is_one_line(tmp_path, monkeypatch, capsys, name, message):
    monkeypatch.chdir(tmp_path)
    _files(tmp_path)
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", "ofa-mbv3", "--checkpoint", name, "--out", "o"], 1, message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("subnet,message", [
    ("{bad", "subnet config is not valid JSON"),
    ("[1, 2]", "subnet"),
    ('{"ks": "x"}', "subnet"),
])
def test_a_bad_subnet_config_is_a_usage_error(tmp_path, monkeypatch, capsys, subnet, message):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", "ofa-mbv3", "--subnet", subnet, "--out", "o"], 2, message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("model,message", [
    ("nosuch.module:fn", "cannot import module 'nosuch.module'"),
    ("tests.fixtures.tiny_models:no_such_function", "no_such_function"),
])
def test_a_model_reference_that_does_not_resolve_is_one_line(tmp_path, monkeypatch, capsys, model, message):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", model, "--out", "o"], 2, message)
    assert snapshot(tmp_path) == before


def test_a_missing_accuracy_predictor_says_how_to_build_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x04garbage")
    cli_error(capsys, ["select", "--target", "rpi5", "--budget-ms", "5", "--accuracy-predictor", "garbage.pt"], 2,
              "no accuracy predictor at garbage.json")


class _Payload:
    """Unpickling this would call os.system: a file from elsewhere must never run it."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_a_hostile_slm_checkpoint_is_one_clean_line(tmp_path, monkeypatch, capsys):
    """`slm:` errors carried torch's colour codes over six lines, and a pickle-protocol warning on stderr."""
    import warnings

    from edgekit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Payload()))
    before = snapshot(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["export", "--model", "slm:evil.pt", "--out", "o"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [err[0]] and "evil.pt: not an edgekit SLM checkpoint (UnpicklingError: Weights only load failed." in err[0]
    assert "\x1b" not in err[0] and not [w for w in caught if issubclass(w.category, UserWarning)]
    assert snapshot(tmp_path) == before
