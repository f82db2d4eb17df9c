"""Formats and model families plug in through their public registries alone (issue 16).

(a) a toy format (a new suffix, an exporter writing ONNX bytes under that name, a backend wrapping
    onnxruntime) exports a bundle through ``export_bundle`` and runs it through ``edgekit.runtimes.load``
    with no edit to the pipeline, the CLI or targets/;
(b) ``edgekit export --model slm-encdec --target jetson`` records a measured host latency and a modeled
    latency for the Jetson unit that runs ONNX (its CPU, onnxruntime), not the TensorRT GPU;
(c) ``edgekit formats --json`` lists every format with its availability and the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgekit.runtimes as rt
from edgekit.cli import main
from edgekit.exporters.onnx import OnnxExporter
from edgekit.runtimes.ort import OrtSession

TINY_CNN = "tests.fixtures.tiny_models:tiny_cnn"

TOY_BOARD = """
name = "toy-board"
description = "a board whose CPU runs the toy format through its own runtime"
memory_bandwidth_gbps = 10
default_unit = "cpu"

[units.cpu]
kind = "cpu"
runtime = "toyrt"
formats = ["toy"]

[units.cpu.peak]
fp32 = 0.05
"""


class ToySession(OrtSession):
    """The toy format's backend: onnxruntime under another name, counting the files it opens."""

    backend = "toy-runtime"
    opened: list = []

    def __init__(self, path, **options) -> None:
        super().__init__(path, **options)
        ToySession.opened.append(self.path.name)


class ToyExporter(OnnxExporter):
    """The toy format's exporter: the ONNX exporter's bytes, written under the toy suffix."""

    format = "toy"


@pytest.fixture
def toy_format():
    record = rt.register_format(rt.Format(
        "toy", ".toyonnx", "toyrt", backend=f"{__name__}:ToySession", exporter=f"{__name__}:ToyExporter",
        precisions=("fp32",), reason="a test's plug-in format",
    ))
    ToySession.opened = []
    try:
        yield record
    finally:
        rt.unregister_format("toy")


def test_a_format_registered_publicly_exports_and_runs_a_bundle(toy_format, tmp_path):
    import torch

    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle
    from tests.fixtures.tiny_models import tiny_cnn

    (tmp_path / "toy-board.toml").write_text(TOY_BOARD, encoding="utf-8")
    out = tmp_path / "bundle"
    result = export_bundle(ExportRequest(out=out, model=ModelRequest(TINY_CNN), target=None,
                                         target_file=tmp_path / "toy-board.toml", measure=MeasureConfig(runs=3)))
    manifest = result.manifest
    assert manifest.format == "toy" and manifest.graph().file == "model.toyonnx"
    assert manifest.validation["passed"] and manifest.validation["runtime"] == "toyrt"
    measured, modeled = manifest.latency
    assert (measured["source"], measured["target"], measured["runtime"]) == ("measured", "host", "toyrt")
    assert (modeled["source"], modeled["target"], modeled["unit"], modeled["runtime"]) == \
        ("modeled", "toy-board", "cpu", "toyrt")  # a new runtime name is accepted in a target profile
    assert "model.toyonnx" in ToySession.opened  # validation and timing ran in the format's own backend

    session = rt.load(out)
    assert isinstance(session, ToySession)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = tiny_cnn().eval()(torch.from_numpy(x)).detach().numpy()
    assert np.abs(session.run(x)["output"] - expected).max() < 1e-5
    assert isinstance(rt.load(out / "model.toyonnx"), ToySession)  # a bare file, by its suffix


def test_an_unregistered_format_is_gone(toy_format):
    from edgekit.runtimes.formats import format_for_suffix

    rt.unregister_format("toy")
    assert format_for_suffix(".toyonnx") is None
    rt.register_format(toy_format)  # the fixture unregisters it again


def test_slm_export_for_jetson_records_host_timing_and_the_unit_that_runs_onnx(tmp_path, capsys):
    code = main(["export", "--model", "slm-encdec", "--target", "jetson", "--out", str(tmp_path / "b"),
                 "--bench-runs", "5"])
    shown = capsys.readouterr()
    assert code == 0, shown.err
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["task"] == "seq2seq" and manifest["format"] == "onnx"
    measured, modeled = manifest["latency"]
    assert (measured["source"], measured["target"], measured["runtime"], measured["graph"]) == \
        ("measured", "host", "onnxruntime", "decoder")
    assert measured["ms"] > 0 and measured["what"].startswith("one decoder step")
    assert (modeled["source"], modeled["target"], modeled["unit"], modeled["runtime"], modeled["graph"]) == \
        ("modeled", "jetson-orin-nano", "cpu", "onnxruntime", "decoder")
    assert modeled["ms"] > 0
    assert set(manifest["toolchain"]) >= {"torch", "onnx", "onnxruntime", "edgekit"}
    assert manifest["provenance"]["exporter"] == "torch.onnx (TorchScript)" and manifest["provenance"]["opset"] == 17
    lines = [line for line in shown.out.splitlines() if line.startswith("latency")]
    assert len(lines) == 2 and "measured on host" in lines[0] and "one decoder step" in lines[0]
    assert lines[1].startswith(f"latency on jetson-orin-nano cpu (onnxruntime, fp32): {modeled['ms']:.3f} ms (modeled")
    assert "decoder graph" in lines[1]
    # the GPU runs TensorRT engines, built on the device from the kit (one engine per graph): no latency line for it
    assert not any("tensorrt" in line for line in lines) and "no published peak" not in shown.out
    assert "tensorrt build kit" in shown.out and manifest["extra"]["kits"]["tensorrt"]["graphs"].keys() == {"encoder", "decoder"}


def test_formats_json_lists_every_format_with_its_availability(capsys):
    assert main(["formats", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["formats"]}
    assert list(rows)[:3] == ["onnx", "tflite", "tensorrt"]
    onnx, tflite, tensorrt = rows["onnx"], rows["tflite"], rows["tensorrt"]
    assert onnx["available"] and onnx["precisions"] == ["fp32", "fp16", "int8"] and onnx["suffix"] == ".onnx"
    assert onnx["can_write_here"] and onnx["can_run_here"] and onnx["runtime_here"]["versions"]["onnxruntime"]
    assert tflite["available"] and tflite["precisions"] == ["fp32", "fp16", "int8"] and tflite["runtime"] == "litert"
    assert tflite["suffix"] == ".tflite" and tflite["can_write_here"] and tflite["can_run_here"]  # [dev] has [tflite]
    assert not tensorrt["available"] and "TensorRT cannot be installed here" in tensorrt["status"]
    assert not tensorrt["can_run_here"] and tensorrt["runtime_here"]["missing"] == ["tensorrt"]

    assert main(["formats"]) == 0
    shown = capsys.readouterr().out
    assert "planned: engine built on the device" in shown and "available" in shown


def test_the_profiling_agent_runs_a_plugged_in_format(toy_format, tmp_path):
    """The agent saved every upload as model.onnx; it now takes the format and runs the file in its backend."""
    import threading

    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle
    from edgekit.targets.agent import make_server
    from edgekit.targets.agent_client import AgentClient

    (tmp_path / "toy-board.toml").write_text(TOY_BOARD, encoding="utf-8")
    out = tmp_path / "bundle"
    export_bundle(ExportRequest(out=out, model=ModelRequest(TINY_CNN), target=None, target_file=tmp_path / "toy-board.toml",
                                output=OutputConfig(format="toy"), measure=MeasureConfig(runs=0)))
    server = make_server("127.0.0.1", 0, token="t0ken", max_body_mb=8, timeout_s=5.0, log=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = AgentClient(f"http://127.0.0.1:{server.server_address[1]}", "t0ken", timeout_s=30)
        ToySession.opened = []
        result = client.profile(out / "model.toyonnx", runs=3, warmup=1)
    finally:
        server.shutdown()
        server.server_close()
    assert result.stats.runs == 3 and result.runtime == "toyrt"
    assert ToySession.opened == ["model.toyonnx"]  # the upload was saved under the format's suffix
