"""TFLite (LiteRT): litert-torch export, ai-edge-quantizer fp16 / int8, the LiteRT session, rpi5's format
choice, run and bench through the CLI, and the bad inputs of issue 10.

Importing litert-torch takes 7-9 s, so the bundles are built once per module.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

MISSING = [m for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed: pip install 'edgekit[tflite]'")

TINY_CNN = "tests.fixtures.tiny_models:tiny_cnn"
# The smallest subnet of the shipped shapes space, at 32 px: a few seconds per held-out pass.
SMALL_SUBNET = json.dumps({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32})
INT8_MIN_AGREEMENT = 0.95  # int8 top-1 agreement with fp32 on the 512 held-out shapes
INT8_MAX_DROP = 0.02  # int8 held-out top-1 at most 2 points below fp32


@pytest.fixture(scope="module")
def tiny_rpi5(tmp_path_factory):
    """``edgekit export --model tiny_cnn --target rpi5`` (no --format): the target's format, fp32."""
    from edgekit.cli import main

    out = tmp_path_factory.mktemp("tfl") / "rpi5"
    assert main(["export", "--model", TINY_CNN, "--target", "rpi5", "--out", str(out), "--bench-runs", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def ofa_int8(tmp_path_factory):
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle

    out = tmp_path_factory.mktemp("tfl") / "ofa-int8"
    return export_bundle(ExportRequest(out=out, model=ModelRequest("ofa-mbv3", subnet=SMALL_SUBNET), target="rpi5",
                                       output=OutputConfig(precision="int8"), measure=MeasureConfig(runs=3)))


def _torch_out(x: np.ndarray) -> np.ndarray:
    import torch

    from tests.fixtures.tiny_models import tiny_cnn

    with torch.no_grad():
        return tiny_cnn().eval()(torch.from_numpy(x)).numpy()


def test_rpi5_writes_tflite_that_runs_in_litert_at_fp32_parity(tiny_rpi5):
    import edgekit.runtimes as rt
    from edgekit.runtimes.litert import LiteRtSession

    manifest = json.loads((tiny_rpi5 / "manifest.json").read_text())
    assert (manifest["format"], manifest["graphs"]["model"]["file"]) == ("tflite", "model.tflite")
    assert manifest["validation"]["passed"] and manifest["validation"]["runtime"] == "litert"
    assert manifest["graphs"]["model"]["inputs"][0]["shape"] == ["batch", 3, 16, 16]  # NCHW, as torch has it
    session = rt.load(tiny_rpi5, threads=1)
    assert isinstance(session, LiteRtSession)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)  # batch 3: one sample at a time
    assert np.abs(session.run(x)["output"] - _torch_out(x)).max() < 1e-4
    measured = next(e for e in manifest["latency"] if e["source"] == "measured")
    modeled = next(e for e in manifest["latency"] if e["target"] == "raspberry-pi-5")
    assert (measured["runtime"], measured["format"], modeled["runtime"]) == ("litert", "tflite", "litert")


def test_fp16_variant_keeps_float_io_and_parity(tiny_rpi5, tmp_path):
    from edgekit.exporters.base import exporter_for
    from edgekit.runtimes.litert import LiteRtSession

    exporter = exporter_for("tflite", "fp16")
    info = exporter.write_variant(tiny_rpi5 / "model.tflite", tmp_path / "fp16.tflite", "fp16", ())
    assert "float casting" in info["method"]
    session = LiteRtSession(tmp_path / "fp16.tflite", threads=1)
    assert not session.quantized_io
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert np.abs(session.run(x)["output_0"] - _torch_out(x)).max() < 1e-2


def test_int8_agrees_with_fp32_on_the_family_held_out_data(ofa_int8):
    from edgekit.runtimes.litert import LiteRtSession

    variant = ofa_int8.manifest.validation["precision"]
    assert variant["vs_fp32"]["top1_agreement"] >= INT8_MIN_AGREEMENT
    assert variant["vs_fp32"]["samples"] == 512 and variant["calibration"].endswith("family data")
    assert variant["vs_fp32"]["accuracy_drop"] <= INT8_MAX_DROP  # the smallest subnet: about 85% top-1 at fp32
    session = LiteRtSession(ofa_int8.path / "model.tflite")
    assert session.quantized_io and session.inputs[0].dtype == "float32"  # int8 I/O, floats for callers


def test_run_and_bench_through_the_cli(tiny_rpi5, tmp_path, capsys):
    from edgekit.cli import main

    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(tiny_rpi5), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "o")]) == 0
    assert np.abs(np.load(tmp_path / "o" / "output.npy") - _torch_out(x)).max() < 1e-4
    capsys.readouterr()
    assert main(["bench", str(tiny_rpi5), "--json", "--runs", "5", "--warmup", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "litert" and data["runs"] == 5 and data["p50_ms"] > 0


def test_a_truncated_tflite_is_a_one_line_model_load_error(tiny_rpi5, tmp_path):
    import edgekit.runtimes as rt
    from edgekit.runtimes.errors import ModelLoadError

    data = (tiny_rpi5 / "model.tflite").read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.tflite: LiteRT cannot load it") as info:
        rt.load(tmp_path / "cut.tflite")
    assert "\n" not in str(info.value)


def test_int8_without_calibration_data_names_calib_data(tmp_path):
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle
    from edgekit.models.registry import ModelRequest
    from edgekit.runtimes.errors import UsageError

    with pytest.raises(UsageError, match="tiny_cnn has no int8 calibration data of its own .* pass --calib-data"):
        export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest(TINY_CNN), target="rpi5",
                                    output=OutputConfig(precision="int8"), measure=MeasureConfig(runs=0)))
    assert not (tmp_path / "b").exists()


def test_int8_with_calib_data_runs(tmp_path):
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle
    from edgekit.models.registry import ModelRequest

    np.save(tmp_path / "calib.npy", np.random.default_rng(3).standard_normal((16, 3, 16, 16)).astype(np.float32))
    result = export_bundle(ExportRequest(
        out=tmp_path / "b", model=ModelRequest(TINY_CNN), target="rpi5", measure=MeasureConfig(runs=0),
        output=OutputConfig(precision="int8", int8_calibration_data=tmp_path / "calib.npy")))
    variant = result.manifest.validation["precision"]
    assert variant["calibration"].startswith("16 samples of --calib-data")
    assert variant["vs_fp32"]["mean_rel_error"] < 0.25


def test_tflite_graph_stats_count_the_onnx_macs(tiny_rpi5, tmp_path):
    import torch

    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.onnx import export_onnx
    from edgekit.exporters.tflite import tflite_stats
    from edgekit.runtimes.spec import TensorSpec
    from tests.fixtures.tiny_models import tiny_cnn

    export_onnx(tiny_cnn().eval(), (TensorSpec("input", ("batch", 3, 16, 16)),), (torch.randn(1, 3, 16, 16),),
                tmp_path / "m.onnx")
    stats = tflite_stats(tiny_rpi5 / "model.tflite")
    assert stats.macs == graph_stats(tmp_path / "m.onnx").macs > 0
    assert stats.ops.get("Conv", 0) >= 1


@pytest.fixture(scope="module")
def tiny_all(tmp_path_factory):
    """``edgekit export --target rpi5 --format all``: tflite (rpi5's first) and onnx in one bundle."""
    from edgekit.cli import main

    out = tmp_path_factory.mktemp("tfl") / "all"
    assert main(["export", "--model", TINY_CNN, "--target", "rpi5", "--format", "all", "--out", str(out),
                 "--bench-runs", "3"]) == 0
    return out


def test_format_all_writes_every_format_the_target_runs_into_one_bundle(tiny_all):
    import edgekit.runtimes as rt
    from edgekit.runtimes.bundle import read_bundle
    from edgekit.runtimes.errors import ModelLoadError

    manifest = read_bundle(tiny_all).manifest
    assert manifest.format_names == ("tflite", "onnx") and sorted(manifest.files) == ["model.onnx", "model.tflite"]
    assert manifest.formats["onnx"]["validation"]["passed"]
    assert manifest.formats["onnx"]["latency"][0]["runtime"] == "onnxruntime"
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)
    sessions = {fmt: rt.load(tiny_all, format=fmt) for fmt in ("onnx", "tflite")}
    assert {fmt: s.backend for fmt, s in sessions.items()} == {"onnx": "onnxruntime", "tflite": "litert"}
    assert rt.load(tiny_all).backend == "litert"  # the first format whose runtime is installed
    for session in sessions.values():
        assert np.abs(session.run(x)["output"] - _torch_out(x)).max() < 1e-4
    with pytest.raises(ModelLoadError, match=r"holds no 'tensorrt' model \(it has \['tflite', 'onnx'\]\)"):
        rt.load(tiny_all, format="tensorrt")


def test_bundle_without_litert_opens_its_onnx(tiny_all, monkeypatch):
    import edgekit.runtimes as rt
    import edgekit.runtimes.loading as loading

    monkeypatch.setattr(loading, "missing_modules", lambda modules: tuple(m for m in modules if m == "ai_edge_litert"))
    assert rt.load(tiny_all).backend == "onnxruntime"


def test_bench_formats_all_prints_a_row_per_format(tiny_all, capsys):
    from edgekit.cli import main

    capsys.readouterr()
    assert main(["bench", str(tiny_all), "--formats", "all", "--json", "--runs", "5", "--warmup", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["format"]: row for row in data["rows"]}
    assert sorted(rows) == ["onnx", "tflite"] and data["source"] == "measured, interleaved"
    assert rows["onnx"]["max_abs_diff_vs"]["format"] == "tflite" and rows["onnx"]["max_abs_diff_vs"]["value"] < 1e-4
    assert all(row["p50_ms"] > 0 and row["bytes"] > 0 and row["parity_vs_torch_max_abs"] < 1e-4 for row in rows.values())
    assert {(i["format"], i["precision"]) for i in data["not_in_bundle"]} == \
        {("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp16"), ("onnx", "int8")}


def test_coral_gets_int8_by_default(tmp_path):
    """The Edge TPU runs full-int8 only: without --precision the export wrote fp32 TFLite and predicted nothing."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    said = []
    manifest = export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest("ofa-mbv3", subnet=SMALL_SUBNET),
                                           target="coral", measure=MeasureConfig(runs=0)), said.append).manifest
    assert (manifest.format, manifest.precision) == ("tflite", "int8")
    assert "no unit of coral-edgetpu runs tflite at fp32: exporting int8" in said
    assert manifest.latency[0]["unit"] == "tpu" and manifest.latency[0]["source"] != "measured"
    assert manifest.validation["precision"]["vs_fp32"]["accuracy_drop"] <= INT8_MAX_DROP
