"""edgekit.runtimes: loading bundles and bare files, input checks, integrity checks, import weight."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgekit.runtimes as rt
from edgekit.runtimes.errors import BundleError, InputMismatchError, ModelLoadError


def test_bundle_runs_dict_and_single_array(tiny_bundle):
    session = rt.load(tiny_bundle, threads=1)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    by_dict = session.run({"input": x})
    by_array = session.run(x)
    assert list(by_dict) == ["output"]
    assert by_dict["output"].shape == (3, 5)
    np.testing.assert_array_equal(by_dict["output"], by_array["output"])


def test_bundle_matches_torch(tiny_bundle):
    import torch

    from tests.fixtures.tiny_models import tiny_cnn

    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = tiny_cnn().eval()(torch.from_numpy(x)).detach().numpy()
    got = rt.load(tiny_bundle).run(x)["output"]
    assert np.abs(got - expected).max() < 1e-5


def test_bare_onnx_file_loads_with_specs_from_the_file(tiny_bundle):
    session = rt.load(tiny_bundle / "model.onnx")
    assert session.inputs[0].name == "input"
    assert session.inputs[0].shape == ("batch", 3, 16, 16)
    assert session.outputs[0].dtype == "float32"


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"image": np.zeros((1, 3, 16, 16), np.float32)}, "unknown input 'image': the model's inputs are ['input']"),
        ({}, "missing input 'input'"),
        ({"input": np.zeros((1, 3, 16, 16), np.float64)}, "input 'input': expected dtype float32, got float64"),
        ({"input": np.zeros((3, 16, 16), np.float32)}, "input 'input': expected rank 4 [batch, 3, 16, 16], got shape (3, 16, 16)"),
        ({"input": np.zeros((1, 3, 16, 17), np.float32)}, "input 'input': dimension 3 must be 16"),
        ({"input": [1, 2, 3]}, "input 'input': expected a numpy array, got list"),
    ],
)
def test_wrong_inputs_name_the_tensor_and_expectation(tiny_bundle, feeds, message):
    session = rt.load(tiny_bundle)
    with pytest.raises(InputMismatchError) as info:
        session.run(feeds)
    assert message in str(info.value)


def test_dynamic_axis_must_agree_across_inputs():
    from edgekit.runtimes.spec import TensorSpec, check_inputs

    specs = (TensorSpec("a", ("batch", 2)), TensorSpec("b", ("batch", 3)))
    with pytest.raises(InputMismatchError, match="axis 'batch' is 4 here but 2 in another input"):
        check_inputs(specs, {"a": np.zeros((2, 2), np.float32), "b": np.zeros((4, 3), np.float32)})


def test_tampered_file_fails_the_sha256_check(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=r"model.onnx: sha256 mismatch"):
        rt.load(copy)
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load it"):
        rt.load(copy, verify=False)  # without the check the damage surfaces later, in onnxruntime


def test_missing_file_is_named(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match="file 'model.onnx' listed in the manifest is missing"):
        rt.load(copy)


def test_malformed_manifest_is_named(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    del data["graphs"]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="manifest.json: missing field 'graphs'"):
        rt.load(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json: invalid JSON"):
        rt.load(copy)


def test_directory_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        rt.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage that is not protobuf" * 10])
def test_corrupt_onnx_is_a_load_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="broken.onnx: onnxruntime cannot load it"):
        rt.load(path)


def test_truncated_onnx_is_a_load_error(tiny_bundle, tmp_path):
    data = (tiny_bundle / "model.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        rt.load(path)


def test_unknown_suffix_and_missing_path(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="unknown model file type '.bin'"):
        rt.load(tmp_path / "model.bin")
    with pytest.raises(ModelLoadError, match="no such file or bundle directory"):
        rt.load(tmp_path / "nope.onnx")


def test_importing_runtimes_stays_light():
    code = (
        "import sys, edgekit.runtimes as rt, edgekit.runtimes.ort\n"
        "heavy = [m for m in ('torch', 'onnx', 'typer', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_runtimes_skips_package_metadata():
    """Cold start: importlib.metadata cost ~30 ms of `import edgekit.runtimes`, tempfile/shutil (write side)
    ~10 ms more (benchmarks/cold_start.py). Only the modules a reader needs may come on top of numpy and
    onnxruntime."""
    code = (
        "import sys, numpy, onnxruntime\n"
        "before = set(sys.modules)\n"
        "import edgekit, edgekit.runtimes, edgekit.runtimes.ort\n"
        "added = {m for m in set(sys.modules) - before if not m.startswith(('edgekit', '_'))}\n"
        "extra = added - {'copy', 'dataclasses', 'hashlib', 'json', 'json.decoder', 'json.encoder', 'json.scanner'}\n"
        "assert not extra, sorted(extra)\n"
        "assert edgekit.__version__.count('.') >= 2, edgekit.__version__\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
