"""The target latency of a file adds what its unsupported nodes cost on the unit they fall back to."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from edgekit.cli import main  # noqa: E402

TINY = "tests.fixtures.tiny_models:tiny_cnn"  # Conv, Relu, ReduceMean, Gemm

BOARD = """
name = "npu-board"
description = "test board: an NPU without ReduceMean, falling back to the CPU"
default_unit = "npu"

[units.npu]
kind = "npu"
runtime = "onnxruntime"
formats = ["onnx"]
precisions = ["fp32"]

[units.npu.peak]
fp32 = 1.0

[units.npu.ops]
source = "test list"
supported = ["Conv", "Relu", "Gemm", "Flatten"]
fallback = "cpu"

[units.cpu]
kind = "cpu"
runtime = "onnxruntime"
formats = ["onnx"]
precisions = ["fp32"]

[units.cpu.peak]
fp32 = 0.001
"""


def _entries(tmp_path, board: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "board.toml"
    path.write_text(board)
    out = tmp_path / "b"
    assert main(["export", "--model", TINY, "--target-file", str(path), "--bench-runs", "0", "--out", str(out)]) == 0
    latency = json.loads((out / "manifest.json").read_text())["latency"]
    return {e["unit"]: e for e in latency if e["source"] != "measured"}


def test_nodes_that_fall_back_are_priced_on_the_fallback_unit(tmp_path):
    entries = _entries(tmp_path, BOARD)
    npu = entries["npu"]
    assert npu["fallback"]["unit"] == "cpu" and npu["fallback"]["nodes"] == 1 and npu["fallback"]["ms"] > 0
    assert "1 node(s) fall back to cpu: +" in " ".join(npu["notes"])
    # the NPU's own part no longer holds the moved node; the sum is its part plus the CPU's price of the node
    assert npu["ms"] == pytest.approx(max(npu["compute_ms"], npu["memory_ms"]) + npu["overhead_ms"] + npu["fallback"]["ms"],
                                      abs=2e-4)
    plain = _entries(tmp_path / "plain", BOARD.replace('fallback = "cpu"\n', "").replace(
        'supported = ["Conv", "Relu", "Gemm", "Flatten"]', 'supported = ["Conv", "Relu", "Gemm", "Flatten", "ReduceMean"]'))
    assert "fallback" not in plain["npu"] and plain["npu"]["overhead_ms"] > npu["overhead_ms"]
