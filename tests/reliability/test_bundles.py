"""Bundles: the crash-safe swap (a kill at each step), one writer per --out, leftovers cleaned, and
malformed manifests refused with one line."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import edgekit.runtimes as rt
from edgekit.runtimes import swap
from edgekit.runtimes.bundle import read_bundle
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import BundleError, EdgekitError

from .helpers import cli_error, load_benchmark, snapshot

pytest.importorskip("onnx")
crash = load_benchmark("crash")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(crash.tiny_onnx())
    return path


@pytest.mark.parametrize("mode,step", crash.STEPS)
def test_a_kill_at_each_step_of_the_swap_leaves_a_complete_bundle_and_the_next_run_cleans_up(tmp_path, model_path, mode, step):
    result = crash.trial(tmp_path, model_path, mode, step, None)
    assert result["killed"], result
    expected = {"staged": "v1", "moved-aside": "v1 (put back)"}.get(step, "v2")
    assert result["found"] == expected, result
    assert result["left_after_next_run"] == [], result
    assert crash.check(tmp_path / "bundle") == "v3"


def test_the_exchange_is_used_on_linux(tmp_path, model_path, monkeypatch):
    crash.write(tmp_path / "b", "v1", model_path.read_bytes())
    steps: list[str] = []
    monkeypatch.setattr(swap, "_after_step", steps.append)
    crash.write(tmp_path / "b", "v2", model_path.read_bytes())
    assert steps == ["exchanged", "removed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_second_writer_to_the_same_out_is_refused_while_the_first_holds_it(tmp_path, model_path):
    out = tmp_path / "b"
    with BundleWriter(out) as first:
        with pytest.raises(BundleError, match=r"b: another edgekit process is writing this bundle \(it holds .b.lock\)"):
            with BundleWriter(out):
                pass
        assert first.path is not None and first.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # lock removed, staging removed


def test_two_concurrent_cli_exports_to_one_out_one_is_refused(tmp_path, model_path):
    out = tmp_path / "b"
    crash.write(out, "v1", model_path.read_bytes())
    holder = swap.OutLock.acquire(out.resolve(), str(out))
    try:
        proc = crash.spawn(out, "v2", model_path)
        _, err = proc.communicate()
    finally:
        holder.release()
    assert proc.returncode == 1 and b"another edgekit process is writing this bundle" in err
    assert crash.check(out) == "v1"


def test_leftovers_of_older_versions_are_cleaned_and_an_old_backup_put_back(tmp_path, model_path):
    out = tmp_path / "b"
    crash.write(out, "v1", model_path.read_bytes())
    os.rename(out, tmp_path / ".b.old-12345")  # the old code's crash window
    (tmp_path / ".b.abcd_123.staging").mkdir()
    (tmp_path / ".b.abcd_123.staging" / "model.onnx").write_bytes(b"half")
    (tmp_path / ".bx.abcd_123.staging").mkdir()  # another --out's: left alone
    with BundleWriter(out) as stage:
        assert crash.check(out) == "v1"  # put back before anything else
        assert stage.path is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bx.abcd_123.staging", "b"]


def test_a_read_only_bundle_folder_is_replaced_without_leaving_its_old_copy(tmp_path, model_path):
    out = tmp_path / "b"
    crash.write(out, "v1", model_path.read_bytes())
    out.chmod(0o555)
    crash.write(out, "v2", model_path.read_bytes())
    assert crash.check(out) == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_out_dot_is_refused_in_a_folder_that_is_not_a_bundle(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    cli_error(capsys, ["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out", ".", "--bench-runs", "0"], 1,
              "is the current directory or a parent of it and is not an edgekit bundle")
    assert snapshot(tmp_path) == before


def _manifest(tmp_path: Path, model_path: Path) -> Path:
    out = tmp_path / "b"
    crash.write(out, "v1", model_path.read_bytes())
    return out


def _edit(out: Path, edit) -> None:
    data = json.loads((out / "manifest.json").read_text())
    edit(data)
    (out / "manifest.json").write_text(json.dumps(data))


BAD_MANIFESTS = {
    "files entry is a string": (lambda d: d["files"].__setitem__("model.onnx", "abc"), "files['model.onnx'] must be an object"),
    "files is a list": (lambda d: d.__setitem__("files", []), "field 'files' must be an object"),
    "graphs empty": (lambda d: d.__setitem__("graphs", {}), "field 'graphs' must be a non-empty object"),
    "graph not an object": (lambda d: d["graphs"].__setitem__("model", 3), "expected an object with 'file'"),
    "schema 2": (lambda d: d.__setitem__("schema_version", 2), "schema_version 2 is not supported"),
    "no target": (lambda d: d.pop("target"), "missing field 'target'"),
    "path escapes": (lambda d: d["graphs"]["model"].__setitem__("file", "../x.onnx"), "must be a file name inside the bundle"),
    "absolute path": (lambda d: d["graphs"]["model"].__setitem__("file", "/etc/passwd"), "must be a file name inside the bundle"),
    "example size huge": (lambda d: d.__setitem__("example_sizes", {"batch": 1 << 30}), "field 'example_sizes' must map"),
    "input name differs from the model": (lambda d: d["graphs"]["model"]["inputs"][0].__setitem__("name", "image"),
                                          "manifest input 'image' is not an input of the model file"),
    "output name differs from the model": (lambda d: d["graphs"]["model"]["outputs"][0].__setitem__("name", "logits"),
                                           "manifest output 'logits' is not an output of the model file"),
    "input rank differs from the model": (lambda d: d["graphs"]["model"]["inputs"][0].__setitem__("shape", [1, 4, 4]),
                                          "input 'x' has rank 3 in the manifest but 2 in the model file"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_malformed_manifest_is_one_typed_error_at_load(tmp_path, model_path, case, capsys):
    out = _manifest(tmp_path, model_path)
    edit, message = BAD_MANIFESTS[case]
    _edit(out, edit)
    with pytest.raises(EdgekitError, match=None) as info:
        rt.load(out)
    assert message in str(info.value) and "\n" not in str(info.value)
    before = snapshot(tmp_path)
    cli_error(capsys, ["bench", str(out), "--runs", "1", "--warmup", "0"], 1, message)
    assert snapshot(tmp_path) == before


def test_a_sha_mismatch_names_the_file(tmp_path, model_path):
    out = _manifest(tmp_path, model_path)
    (out / "version.txt").write_text("v9")
    with pytest.raises(BundleError, match=r"version.txt: sha256 mismatch"):
        read_bundle(out)
