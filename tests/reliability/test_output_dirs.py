"""Output directories: lut tables stay in their folder, run outputs and exports never replace what is
not theirs, and a refused command leaves the disk as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import cli_error, snapshot

KEY = "Logits-input:1x1x1280-output:1000"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("option,value", [("--target", "../../../PWNED_lut"), ("--target", "a/b"), ("--space", "../../x"),
                                          ("--target", "..\\..\\x")])
def test_lut_import_never_writes_outside_the_tables_folder(tmp_path, cache, capsys, option, value):
    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text(f"{KEY}:\n  mean: 1.5\n")
    args = ["lut", "import", str(yaml_file), "--target", "x"]
    args = args[:3] + ([option, value] if option == "--target" else ["--target", "x", option, value])
    before = snapshot(tmp_path)
    cli_error(capsys, args, 1, f"{value!r}: expected a name without '/', backslash or NUL")
    assert snapshot(tmp_path) == before
    assert not list(tmp_path.parent.glob("PWNED*")) and not list(tmp_path.glob("**/PWNED*"))


@pytest.mark.parametrize("mean,message", [(".nan", "'mean' must be a finite number of ms >= 0, got nan"),
                                          ("-3", "'mean' must be a finite number of ms >= 0, got -3"),
                                          (".inf", "'mean' must be a finite number of ms >= 0, got inf"),
                                          ("true", "'mean' must be a finite number of ms >= 0, got True")])
def test_lut_import_refuses_nan_and_negative_means(tmp_path, cache, capsys, mean, message):
    from edgekit.targets.lut import load_ofa_yaml  # noqa: F401 - the importer under test

    yaml_file = tmp_path / "t.yaml"
    yaml_file.write_text(f"{KEY}:\n  mean: {mean}\n")
    before = snapshot(tmp_path)
    message_line = cli_error(capsys, ["lut", "import", str(yaml_file), "--target", "x"], 1, message)
    assert str(yaml_file) in message_line
    assert snapshot(tmp_path) == before


def test_run_out_over_a_file_is_one_line(tmp_path, monkeypatch, capsys, tiny_bundle):
    import numpy as np

    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    (tmp_path / "taken").write_text("mine")
    before = snapshot(tmp_path)
    message = cli_error(capsys, ["run", str(tiny_bundle), "--input", "x.npy", "--out", "taken"], 2, "--out taken: cannot create the directory")
    assert "Traceback" not in message
    assert snapshot(tmp_path) == before


def test_export_into_a_file_path_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("mine")
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "file/bundle", "--bench-runs", "0"],
              1, "file/bundle")
    assert snapshot(tmp_path) == before


def test_export_over_a_non_bundle_folder_leaves_it_intact(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "photos", "--bench-runs", "0"], 1,
              "photos: exists and is not an edgekit bundle (it holds cat.jpg)")
    assert snapshot(tmp_path) == before


def test_export_json_error_is_a_json_object(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    cli_error(capsys, ["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", "photos", "--json"], 1,
              "exists and is not an edgekit bundle")


def test_a_parity_failure_names_the_graph_not_a_deleted_staging_file(tmp_path, monkeypatch, capsys):
    """The error named `.out.XXXX.staging/model.onnx`, a folder already removed when the user reads it."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    err = cli_error(capsys, ["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--atol", "0", "--rtol", "0",
                             "--out", "o", "--bench-runs", "0"], 1,
                    "the exported onnx file of graph 'model': output 'output' differs from torch by up to")
    assert "staging" not in err and str(tmp_path) not in err
    assert snapshot(tmp_path) == before
