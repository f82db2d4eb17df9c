"""A bundle records only latencies of units that can run its file; select marks what edgekit cannot write."""

from __future__ import annotations

import json

from edgekit.cli import main

TINY_CNN = "tests.fixtures.tiny_models:tiny_cnn"


def _export(capsys, tmp_path, *args: str) -> tuple[dict, str]:
    code = main(["export", "--model", TINY_CNN, "--out", str(tmp_path / "b"), "--bench-runs", "0", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads((tmp_path / "b" / "manifest.json").read_text()), captured.out


def test_onnx_bundle_for_jetson_records_the_cpu_that_runs_onnx_not_the_tensorrt_gpu(tmp_path, capsys):
    manifest, shown = _export(capsys, tmp_path, "--target", "jetson")
    assert manifest["format"] == "onnx"
    (entry,) = manifest["latency"]
    assert (entry["target"], entry["unit"], entry["runtime"], entry["precision"]) == \
        ("jetson-orin-nano", "cpu", "onnxruntime", "fp32")
    assert entry["source"] == "modeled" and entry["ms"] > 0
    # the bundle carries the TensorRT build kit (its files are listed), but no latency is the tensorrt gpu's
    assert not [line for line in shown.splitlines() if line.startswith("latency") and "tensorrt" in line]
    assert f"latency on jetson-orin-nano cpu (onnxruntime, fp32): {entry['ms']:.3f} ms (modeled, batch 1)" in shown


def test_a_bundle_no_unit_runs_says_so_in_one_line(tmp_path, capsys):
    # jetson's cpu runs onnx at fp32/int8 only, its gpu runs tensorrt: nothing there runs an fp16 .onnx
    manifest, shown = _export(capsys, tmp_path, "--target", "jetson", "--precision", "fp16")
    assert manifest["latency"] == []
    lines = [line for line in shown.splitlines() if line.startswith("latency on")]
    assert lines == ["latency on jetson-orin-nano: no prediction: no unit runs onnx fp16 "
                     "(gpu runs tensorrt; cpu runs onnx at fp32, int8)"]


def test_budget_export_records_the_unit_and_precision_the_search_chose(tmp_path, capsys):
    code = main(["export", "--target", "jetson", "--budget-ms", "2", "--out", str(tmp_path / "b"), "--bench-runs", "0"])
    shown = capsys.readouterr().out
    assert code == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    best = manifest["extra"]["search"]["best"]
    assert (best["unit"], best["precision"], best["format"]) == ("cpu", "int8", "onnx")
    (entry,) = manifest["latency"]
    assert (entry["unit"], entry["precision"], entry["runtime"]) == ("cpu", "int8", "onnxruntime")
    assert manifest["precision"] == "int8" and manifest["format"] == "onnx"
    assert not [line for line in shown.splitlines() if line.startswith("latency") and "tensorrt" in line]
    assert "gpu" not in shown


def test_select_marks_candidates_edgekit_cannot_write_yet(capsys):
    args = ["select", "--target", "jetson", "--budget-ms", "2"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    formats = {c["format"]: c["writable"] for c in data["pareto"]}
    assert formats == {"tensorrt": False, "onnx": True}
    assert data["best"]["writable"] is False and data["best"]["format"] == "tensorrt"
    assert data["not_writable"] == {"tensorrt": "planned, edgekit cannot write it yet"}

    assert main(args) == 0
    shown = capsys.readouterr().out
    assert "writable" in shown and "tensorrt: planned, edgekit cannot write it yet" in shown
    assert "(edgekit cannot write tensorrt yet: export --budget-ms chooses among onnx)" in shown
