"""ONNX export and validation against torch, model references, and the export pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.exporters.onnx import OnnxExportOptions, export_onnx, read_onnx_specs, validate
from edgekit.models.registry import ModelRequest, parse_shape, resolve_model
from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle
from edgekit.runtimes.errors import ExportError, UsageError, ValidationError
from edgekit.runtimes.spec import TensorSpec
from tests.fixtures.tiny_models import tiny_cnn, unsupported

SPEC = (TensorSpec("input", ("batch", 3, 16, 16)),)


def test_export_keeps_dynamic_batch_and_metadata(tmp_path):
    import onnx

    art = export_onnx(tiny_cnn(), SPEC, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx",
                      options=OnnxExportOptions(metadata={"target": "jetson-orin-nano"}))
    assert art.inputs[0].shape == ("batch", 3, 16, 16)
    assert art.outputs[0].shape == ("batch", 5)
    assert art.opset == 17
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props == {"target": "jetson-orin-nano"}


def test_validate_reports_small_error_for_a_correct_export(tmp_path):
    model = tiny_cnn().eval()
    export_onnx(model, SPEC, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx")
    report = validate(tmp_path / "m.onnx", model, SPEC)
    assert report.passed and report.trials == 2
    assert 0 < report.max_abs["output"] < 1e-5


def test_validate_raises_when_the_file_disagrees_with_torch(tmp_path):
    export_onnx(tiny_cnn(), SPEC, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx")
    other = tiny_cnn().eval()
    with torch.no_grad():
        other.head.bias += 0.01  # a different model: parity must fail, loudly
    with pytest.raises(ValidationError, match=r"output 'output' differs from torch by up to 0\.01") as info:
        validate(tmp_path / "m.onnx", other, SPEC)
    assert info.value.report.passed is False


def test_unsupported_op_is_named_with_its_node(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(unsupported(), (TensorSpec("input", ("batch", 4)),), (torch.randn(1, 4),), tmp_path / "m.onnx")
    message = str(info.value)
    assert "op aten::i0 cannot be exported to ONNX opset 17" in message
    assert "tiny_models.py" in message  # the source line of the node


def test_input_shape_that_does_not_fit(tmp_path):
    with pytest.raises(ExportError, match=r"input shape input=\(1, 4, 16, 16\) does not fit the model"):
        export_onnx(tiny_cnn(), SPEC, (torch.randn(1, 4, 16, 16),), tmp_path / "m.onnx")


def test_dynamo_needs_opset_18():
    with pytest.raises(ExportError, match="dynamo exporter needs opset >= 18"):
        OnnxExportOptions(dynamo=True, opset=17)


def test_read_specs_of_corrupt_file(tmp_path):
    from edgekit.runtimes.errors import ModelLoadError

    (tmp_path / "bad.onnx").write_bytes(b"\x01\x02garbage")
    with pytest.raises(ModelLoadError, match="bad.onnx: not a readable ONNX file"):
        read_onnx_specs(tmp_path / "bad.onnx")


@pytest.mark.parametrize(
    "ref, message",
    [
        ("tests.fixtures.nope:tiny_cnn", "cannot import module 'tests.fixtures.nope'"),
        ("tests.fixtures.tiny_models:missing", "has no callable 'missing'"),
        ("tests.fixtures.tiny_models:not_a_module", "the factory returned str, expected a torch.nn.Module"),
        ("tests.fixtures.tiny_models:raises", "the factory raised RuntimeError: factory exploded"),
        ("tests.fixtures.tiny_models:no_shape", "no input shape; pass --input-shape"),
        ("mobilenet-v3-smal", "did you mean 'mobilenet-v3-small'?"),
    ],
)
def test_bad_model_references(ref, message):
    with pytest.raises(UsageError) as info:
        resolve_model(ModelRequest(ref))
    assert message in str(info.value)


@pytest.mark.parametrize("text", ["1,3,x", "", "0,3,4", "a"])
def test_bad_input_shapes(text):
    with pytest.raises(UsageError, match="--input-shape"):
        parse_shape(text)


def test_factory_with_explicit_input_shape():
    source = resolve_model(ModelRequest("tests.fixtures.tiny_models:no_shape", (1, 4)))
    assert source.inputs[0].shape == ("batch", 4)


def test_pt2_archive_exports_with_its_static_shape(tmp_path):
    model = tiny_cnn().eval()
    program = torch.export.export(model, (torch.randn(1, 3, 16, 16),))
    torch.export.save(program, tmp_path / "tiny.pt2")
    result = export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(str(tmp_path / "tiny.pt2")), measure=MeasureConfig(runs=0)))
    graph = result.manifest.graph()
    assert graph.inputs[0].shape == (1, 3, 16, 16)
    import edgekit.runtimes as rt

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(rt.load(tmp_path / "b").run(x)["output"] - expected).max() < 1e-5


def test_pipeline_refuses_formats_it_cannot_write_and_keeps_existing_bundle(tiny_bundle, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(UsageError, match="--format tflite: target jetson\\S* runs \\["):
        export_bundle(ExportRequest(out=out, target="jetson", output=OutputConfig(format="tflite")))
    import edgekit.runtimes.formats as format_table

    with monkeypatch.context() as patch:  # a machine without the [tflite] extra
        patch.setattr(format_table, "missing_modules", lambda modules: tuple(m for m in modules if m == "litert_torch"))
        with pytest.raises(UsageError, match=r"--format tflite: its exporter needs litert_torch: pip install 'edgekit\[tflite\]'"):
            export_bundle(ExportRequest(out=out, target="rpi5", output=OutputConfig(format="tflite")))
    with pytest.raises(UsageError, match="--precision int4: format onnx supports \\['fp32', 'fp16', 'int8'\\]"):
        export_bundle(ExportRequest(out=out, output=OutputConfig(precision="int4")))
    assert (out / "manifest.json").read_text() == before


def test_failed_validation_writes_nothing(tmp_path, monkeypatch):
    from edgekit.exporters.onnx import OnnxExporter

    def broken_validate(*args, **kwargs):
        raise ValidationError("parity failed")

    monkeypatch.setattr(OnnxExporter, "validate", broken_validate)
    with pytest.raises(ValidationError):
        export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest("tests.fixtures.tiny_models:tiny_cnn")))
    assert list(tmp_path.iterdir()) == []


def test_manifest_records_provenance_toolchain_and_labelled_latency(tiny_bundle):
    from edgekit.runtimes.bundle import read_bundle

    manifest = read_bundle(tiny_bundle).manifest
    assert manifest.provenance["model"] == "tests.fixtures.tiny_models:tiny_cnn"
    assert manifest.provenance["opset"] == 17
    assert set(manifest.toolchain) >= {"torch", "onnx", "onnxruntime", "edgekit"}
    assert manifest.validation["passed"] is True and manifest.validation["max_abs_error"]["output"] < 1e-4
    (latency,) = manifest.latency
    assert latency["source"] == "measured" and latency["target"] == "host" and latency["ms"] > 0
