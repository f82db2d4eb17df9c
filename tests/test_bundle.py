"""Bundle writing is atomic: an interrupted export leaves nothing half-written and keeps the old bundle."""

from __future__ import annotations

import json

import pytest

from edgekit.runtimes.bundle import Graph, Manifest, read_bundle
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import BundleError
from edgekit.runtimes.spec import TensorSpec

GRAPH = Graph("model.onnx", (TensorSpec("x", ("batch", 3)),), (TensorSpec("y", ("batch", 2)),))


def _write(out, payload: bytes) -> Manifest:
    with BundleWriter(out) as stage:
        (stage.path / "model.onnx").write_bytes(payload)
        return stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": GRAPH}))


def test_manifest_lists_every_file_with_sha256(tmp_path):
    import hashlib

    manifest = _write(tmp_path / "b", b"abc")
    assert manifest.files["model.onnx"] == {"sha256": hashlib.sha256(b"abc").hexdigest(), "bytes": 3}
    on_disk = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert on_disk["files"]["model.onnx"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert read_bundle(tmp_path / "b").manifest.graph().inputs[0].shape == ("batch", 3)


def test_failure_mid_write_keeps_the_old_bundle_and_leaves_no_staging(tmp_path):
    out = tmp_path / "b"
    _write(out, b"version one")
    with pytest.raises(RuntimeError):
        with BundleWriter(out) as stage:
            (stage.path / "model.onnx").write_bytes(b"half")
            raise RuntimeError("crash during export")
    assert (out / "model.onnx").read_bytes() == b"version one"
    read_bundle(out)  # still verifies
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_rewrite_replaces_the_bundle_whole(tmp_path):
    out = tmp_path / "b"
    _write(out, b"one")
    _write(out, b"two")
    assert (out / "model.onnx").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_graph_file_must_be_written(tmp_path):
    with pytest.raises(BundleError, match="graph 'model': file 'model.onnx' was not written"):
        with BundleWriter(tmp_path / "b") as stage:
            stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": GRAPH}))
    assert not (tmp_path / "b").exists()


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="cannot write the output directory"):
        with BundleWriter(blocker / "bundle"):
            pass


def test_bundle_gets_ordinary_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        _write(tmp_path / "b", b"x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "b" / "manifest.json").stat().st_mode) == 0o644
