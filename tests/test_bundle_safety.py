"""Bundles stay inside themselves: export never replaces a directory that is not a bundle, and reading a
bundle never opens a file outside it or a file that the manifest does not list with its sha256."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import edgekit.runtimes as rt
from edgekit.cli import main
from edgekit.runtimes.bundle import Graph, Manifest, read_bundle
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import BundleError, ModelLoadError
from edgekit.runtimes.spec import TensorSpec

onnx = pytest.importorskip("onnx")

WEIGHTS = np.arange(32 * 4, dtype=np.float32).reshape(32, 4) / 100
GRAPH = Graph("model.onnx", (TensorSpec("x", ("batch", 32)),), (TensorSpec("y", ("batch", 4)),))
TINY_CNN = "tests.fixtures.tiny_models:tiny_cnn"


def _matmul_model(weights: np.ndarray = WEIGHTS):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weights, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _write_bundle(out: Path, *, external: bool = False, force: bool = False) -> Manifest:
    with BundleWriter(out, force=force) as stage:
        if external:
            onnx.save_model(_matmul_model(), str(stage.path / "model.onnx"), save_as_external_data=True,
                            all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
        else:
            onnx.save_model(_matmul_model(), str(stage.path / "model.onnx"))
        return stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": GRAPH}))


def _edit_manifest(bundle: Path, edit) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    edit(data)
    (bundle / "manifest.json").write_text(json.dumps(data))


def _listing(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` with its bytes (None for directories), to compare byte for byte."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)


@pytest.fixture()
def bundle(tmp_path) -> Path:
    out = tmp_path / "bundle"
    _write_bundle(out)
    return out


@pytest.fixture()
def outside_model(tmp_path) -> Path:
    """A valid model outside any bundle, with other weights (a bundle that ran it would say so)."""
    path = tmp_path / "outside.onnx"
    onnx.save_model(_matmul_model(-WEIGHTS), str(path))
    return path


# ---- 1. export never replaces a directory that is not an edgekit bundle ------------------------------


@pytest.fixture()
def victim(tmp_path) -> Path:
    victim = tmp_path / "victim"
    (victim / "notes").mkdir(parents=True)
    (victim / "important.txt").write_text("keep\n")
    (victim / "notes" / "a.md").write_text("also keep\n")
    return victim


def test_cli_export_refuses_a_directory_that_is_not_a_bundle_and_leaves_it_intact(victim, capsys):
    before = _listing(victim)
    code = main(["export", "--model", TINY_CNN, "--target", "host", "--out", str(victim), "--bench-runs", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {victim}: exists and is not an edgekit bundle (it holds important.txt, notes/); " \
           "refusing to replace it (pass --force to replace it anyway)" in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert "loading model" not in err and "exporting" not in err  # refused before any work
    assert _listing(victim) == before
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]  # no staging directory left behind


def test_cli_export_with_force_replaces_it(victim, capsys):
    code = main(["export", "--model", TINY_CNN, "--out", str(victim), "--bench-runs", "0", "--force"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in victim.iterdir()) == ["manifest.json", "model.onnx"]
    read_bundle(victim)


def test_refusal_comes_before_any_work(victim):
    with pytest.raises(BundleError, match="exists and is not an edgekit bundle"):
        with BundleWriter(victim):
            pytest.fail("the export ran although its output would be refused")


@pytest.mark.parametrize("manifest", ["{not json", "{}", '{"name": "my web app", "icons": []}',
                                      '{"schema_version": 1, "files": []}'])
def test_a_manifest_json_edgekit_did_not_write_is_not_a_bundle(tmp_path, manifest):
    out = tmp_path / "app"
    out.mkdir()
    (out / "manifest.json").write_text(manifest)
    with pytest.raises(BundleError, match=r"app: exists and is not an edgekit bundle \(it holds manifest.json\)"):
        _write_bundle(out)
    assert (out / "manifest.json").read_text() == manifest


def test_a_bundle_with_files_it_does_not_list_is_not_replaced(bundle):
    (bundle / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match=r"bundle: exists and is not an edgekit bundle \(it holds notes.txt\)"):
        _write_bundle(bundle)
    assert (bundle / "notes.txt").read_text() == "mine"
    _write_bundle(bundle, force=True)
    assert not (bundle / "notes.txt").exists()


def test_reexport_over_a_bundle_and_into_an_empty_directory_works(bundle, tmp_path, capsys):
    code = main(["export", "--model", TINY_CNN, "--out", str(bundle), "--bench-runs", "0"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.onnx"]
    (tmp_path / "empty").mkdir()
    _write_bundle(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "empty"]


def test_out_may_not_be_the_current_directory_or_a_parent_of_it(tmp_path, monkeypatch):
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    (work / "src.py").write_text("print(1)\n")
    monkeypatch.chdir(work)
    for out in (".", "..", str(tmp_path)):
        with pytest.raises(BundleError, match="is the current directory or a parent of it"):
            _write_bundle(Path(out), force=True)
    assert (work / "src.py").read_text() == "print(1)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_out_may_be_the_current_directory_when_it_is_a_bundle(bundle, monkeypatch):
    monkeypatch.chdir(bundle)
    manifest = _write_bundle(Path("."))
    assert manifest.files["model.onnx"]["bytes"] > 0
    read_bundle(bundle)
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle"]


def test_a_symlink_at_out_is_not_followed_or_replaced(tmp_path, victim):
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(BundleError, match="link: exists and is not an edgekit bundle"):
        _write_bundle(link)
    assert link.is_symlink() and (victim / "important.txt").read_text() == "keep\n"


# ---- 3b. every path in a manifest stays inside the bundle ---------------------------------------------


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.onnx", "../../x.onnx", "a/../../x.onnx",
                                  "C:\\x.onnx", "sub\\model.onnx", "./model.onnx", "a//b.onnx", ""])
def test_files_keys_must_be_names_inside_the_bundle(bundle, name):
    _edit_manifest(bundle, lambda d: d["files"].update({name: {"sha256": "0" * 64, "bytes": 1}}))
    with pytest.raises(BundleError, match=r"manifest.json: files key .* must be a file name inside the bundle"):
        read_bundle(bundle, verify=False)


def test_a_manifest_listing_etc_passwd_with_its_real_sha256_is_refused(bundle):
    passwd = Path("/etc/passwd")
    sha = hashlib.sha256(passwd.read_bytes()).hexdigest()
    _edit_manifest(bundle, lambda d: d["files"].update({str(passwd): {"sha256": sha, "bytes": passwd.stat().st_size}}))
    with pytest.raises(BundleError, match=r"manifest.json: files key '/etc/passwd' must be a file name inside the bundle"):
        rt.load(bundle)


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_a_graph_file_outside_the_bundle_is_refused_by_load_run_and_inspect(bundle, outside_model, tmp_path, capsys, kind):
    name = str(outside_model) if kind == "absolute" else os.path.relpath(outside_model, bundle)
    info = {"sha256": hashlib.sha256(outside_model.read_bytes()).hexdigest(), "bytes": outside_model.stat().st_size}

    def point_outside(data):
        data["graphs"]["model"]["file"] = name
        data["files"][name] = info

    _edit_manifest(bundle, point_outside)
    message = f"graphs.model.file '{name}' must be a file name inside the bundle"
    with pytest.raises(BundleError, match=message.replace(".", r"\.")):
        rt.load(bundle)
    np.save(tmp_path / "x.npy", _x())
    for args in (["run", str(bundle), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")],
                 ["inspect", str(bundle)]):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 1 and message in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_symlinks_leaving_the_bundle_are_refused(bundle, outside_model, tmp_path):
    # the outside file has the listed sha256, so only the link itself can be the reason
    (bundle / "model.onnx").unlink()
    os.replace(outside_model, tmp_path / "same.onnx")
    onnx.save_model(_matmul_model(), str(tmp_path / "same.onnx"))
    (bundle / "model.onnx").symlink_to(tmp_path / "same.onnx")
    with pytest.raises(BundleError, match="bundle: 'model.onnx' is a symbolic link"):
        rt.load(bundle)
    with pytest.raises(BundleError, match="bundle: 'model.onnx' is a symbolic link"):
        read_bundle(bundle, verify=False)


def test_a_symlinked_manifest_is_refused(bundle, tmp_path):
    os.replace(bundle / "manifest.json", tmp_path / "elsewhere.json")
    (bundle / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(BundleError, match="manifest.json is a symbolic link"):
        rt.load(bundle)


def test_a_symlinked_directory_in_the_bundle_is_refused(bundle, tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("k")
    (bundle / "sub").symlink_to(tmp_path / "secrets")
    with pytest.raises(BundleError, match="bundle: 'sub' is a symbolic link"):
        rt.load(bundle)


def test_tokenizer_files_must_be_inside_the_bundle_and_listed(bundle, tmp_path):
    from edgekit.runtimes.tokenizer import load_tokenizer

    outside = tmp_path / "tokenizer.json"
    outside.write_text("{}")
    _edit_manifest(bundle, lambda d: d["extra"].update({"tokenizer": {"kind": "hf", "files": [str(outside)]}}))
    with pytest.raises(BundleError, match=r"extra\.tokenizer\.files\[0\] '.*tokenizer.json' must be a file name inside"):
        read_bundle(bundle, verify=False)
    with pytest.raises(BundleError, match="must be a file name inside the bundle"):
        load_tokenizer(bundle, {"kind": "hf", "files": [str(outside)]})
    (bundle / "tok").mkdir()
    (bundle / "tok" / "tokenizer.json").write_text("{}")
    _edit_manifest(bundle, lambda d: d["extra"].update({"tokenizer": {"kind": "hf", "files": ["tok/tokenizer.json"]}}))
    with pytest.raises(BundleError, match=r"extra\.tokenizer\.files\[0\] 'tok/tokenizer.json' is not listed in 'files'"):
        read_bundle(bundle, verify=False)


def test_an_oversized_manifest_is_refused_before_it_is_read(bundle):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text[:-2] + " " * (17 << 20) + text[-2:])  # still valid JSON
    with pytest.raises(BundleError, match=r"manifest.json: 17\.0 MiB is larger than the 16 MiB a manifest may be"):
        rt.load(bundle)


# ---- 3c. every file in the bundle is listed and verified, external data included ----------------------


def test_external_data_is_listed_verified_and_tamper_detected(tmp_path):
    out = tmp_path / "ext"
    manifest = _write_bundle(out, external=True)
    assert sorted(manifest.files) == ["model.onnx", "weights.bin"]
    assert manifest.files["weights.bin"]["bytes"] == WEIGHTS.nbytes
    x = _x()
    np.testing.assert_allclose(rt.load(out).run(x)["y"], x @ WEIGHTS, rtol=1e-5)
    (out / "weights.bin").write_bytes((-WEIGHTS).tobytes())
    with pytest.raises(BundleError, match="weights.bin: sha256 mismatch"):
        rt.load(out)


def test_an_unlisted_external_data_file_is_refused(tmp_path):
    out = tmp_path / "ext"
    _write_bundle(out, external=True)
    _edit_manifest(out, lambda d: d["files"].pop("weights.bin"))
    (out / "weights.bin").write_bytes((-WEIGHTS).tobytes())  # the tampered weights would change every output
    with pytest.raises(BundleError, match=r"ext: file 'weights.bin' is not listed in the manifest \(unverified files are refused\)"):
        rt.load(out)


def test_onnxruntime_refuses_external_data_outside_the_model_directory(tmp_path):
    """Guard for a rule edgekit relies on (runtimes read no protobuf): a listed model whose external data
    points outside the bundle does not load."""
    out = tmp_path / "ext"
    with BundleWriter(out) as stage:
        model = _matmul_model()
        onnx.save_model(model, str(stage.path / "model.onnx"), save_as_external_data=True, location="w.bin",
                        size_threshold=0)
        (stage.path / "w.bin").rename(tmp_path / "w.bin")
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "../w.bin"
        onnx.save_model(model, str(stage.path / "model.onnx"))
        stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": GRAPH}))
    with pytest.raises(ModelLoadError, match="escapes model directory"):
        rt.load(out)
