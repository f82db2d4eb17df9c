"""int8 and fp16 variants: real onnxruntime quantization, measured agreement, refusal when collapsed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.exporters.accuracy import PrecisionReport, check_not_collapsed, compare_outputs
from edgekit.models.registry import ModelRequest
from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, ValidationConfig, export_bundle
from edgekit.runtimes.errors import ExportError, UsageError

TINY = ModelRequest("tests.fixtures.tiny_models:tiny_cnn")


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    export_bundle(ExportRequest(out=out, model=TINY, output=OutputConfig(precision="int8", int8_calibration_samples=16),
                                measure=MeasureConfig(runs=5)))
    return out


def test_int8_bundle_is_qdq_and_close_to_fp32(int8_bundle, tiny_bundle):
    import onnx

    import edgekit.runtimes as rt

    ops = {node.op_type for node in onnx.load(str(int8_bundle / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    info = manifest["validation"]["precision"]
    assert len(info["candidates"]) == 4 and all(c["p50_ms_host"] > 0 for c in info["candidates"])
    assert info["vs_fp32"]["mean_rel_error"] < 0.05
    assert info["calibration"].startswith("16 samples of random normal inputs")
    x = np.random.default_rng(5).standard_normal((4, 3, 16, 16)).astype(np.float32)
    fp32 = rt.load(tiny_bundle).run(x)["output"]
    int8 = rt.load(int8_bundle).run(x)["output"]
    assert np.linalg.norm(int8 - fp32) / np.linalg.norm(fp32) < 0.05


def test_fp16_variant(tmp_path):
    import onnx

    manifest = export_bundle(ExportRequest(out=tmp_path / "fp16", model=TINY, output=OutputConfig(precision="fp16"),
                                             measure=MeasureConfig(runs=0))).manifest
    assert manifest.precision == "fp16"
    model = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert manifest.graph().inputs[0].dtype == "float32"  # I/O stays fp32
    assert manifest.validation["precision"]["vs_fp32"]["mean_rel_error"] < 1e-2


def test_collapse_is_refused_with_numbers_and_nothing_written(tmp_path):
    with pytest.raises(ExportError, match=r"int8 output differs from fp32 by \d+\.\d% on average \(allowed 0\.0%\)"):
        export_bundle(ExportRequest(out=tmp_path / "b", model=TINY,
                                    output=OutputConfig(precision="int8", int8_calibration_samples=8),
                                    validation=ValidationConfig(max_rel_error=0.0), measure=MeasureConfig(runs=0)))
    assert not (tmp_path / "b").exists()


def test_labelled_accuracy_drop_is_refused():
    ref = [{"y": np.array([[0.0, 1.0]])}] * 10
    var = [{"y": np.array([[1.0, 0.0]])}] * 3 + [{"y": np.array([[0.0, 1.0]])}] * 7
    report = compare_outputs(ref, var, labels=np.ones(10, int), data="held-out")
    assert report.accuracy_drop == pytest.approx(0.3)
    with pytest.raises(ExportError, match=r"100\.0% fp32 -> 70\.0% \(drop 30\.0 points > allowed 5\.0\)"):
        check_not_collapsed(report, "int8", max_accuracy_drop=0.05, max_rel_error=1.0)
    check_not_collapsed(PrecisionReport(10, 0.01, 1.0, 0.9, 0.89), "int8", max_accuracy_drop=0.05, max_rel_error=0.1)


def test_calibration_file(tmp_path):
    good = np.random.default_rng(0).standard_normal((12, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "calib.npy", good)
    with_file = OutputConfig(precision="int8", int8_calibration_data=tmp_path / "calib.npy")
    manifest = export_bundle(ExportRequest(out=tmp_path / "b", model=TINY, output=with_file, measure=MeasureConfig(runs=0))).manifest
    assert manifest.validation["precision"]["calibration"].startswith("12 samples of --calib-data")
    np.save(tmp_path / "wrong.npy", good[:, :2])
    with pytest.raises(UsageError, match=r"expected samples shaped \(N, 3, 16, 16\) for input 'input', got \(12, 2, 16, 16\)"):
        export_bundle(ExportRequest(out=tmp_path / "c", model=TINY,
                                    output=OutputConfig(precision="int8", int8_calibration_data=tmp_path / "wrong.npy")))
