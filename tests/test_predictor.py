"""Predictions carry their source: measured (store) > calibrated (edgekit calibrate) > modeled."""

from __future__ import annotations

import json

import pytest

from edgekit.cli import main


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _show(capsys, *args):
    assert main(["targets", "show", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["model_estimates"]


def _row(estimates, unit, precision):
    return next(r for r in estimates["latency"] if r["unit"] == unit and r["precision"] == precision)


def test_sources_progress_from_modeled_to_calibrated_to_measured(tiny_bundle, cache, capsys):
    modeled = _row(_show(capsys, "host", "--model", str(tiny_bundle), "--threads", "1"), "cpu", "fp32")
    assert modeled["source"] == "modeled" and modeled["ms"] > 0

    assert main(["calibrate", "--target", "host", "--runs", "5", "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["calibration"]["samples"] >= 30
    assert (cache / "calibrations" / "host-cpu-fp32-t1.json").is_file()
    # the zoo's measurements went to the store too
    assert len(fitted["measured_ms"]) == fitted["calibration"]["samples"]
    calibrated = _row(_show(capsys, "host", "--model", str(tiny_bundle), "--threads", "1"), "cpu", "fp32")
    assert calibrated["source"] == "calibrated" and calibrated["ms"] != modeled["ms"]

    assert main(["profile", str(tiny_bundle), "--threads", "1", "--runs", "5", "--json"]) == 0
    measured_ms = json.loads(capsys.readouterr().out)["stats"]["p50_ms"]
    measured = _row(_show(capsys, "host", "--model", str(tiny_bundle), "--threads", "1"), "cpu", "fp32")
    assert measured["source"] == "measured" and measured["ms"] == pytest.approx(measured_ms)


def test_every_target_gets_a_labelled_prediction_or_a_reason(tiny_bundle, cache, capsys):
    from edgekit.targets import list_targets

    for target in list_targets():
        estimates = _show(capsys, target.name, "--model", str(tiny_bundle))
        for row in estimates["latency"]:
            # a unit x precision fitted to published points of its runtime says so; the others are modeled
            fitted = target.unit(row["unit"]).published_fit(row["runtime"], row["precision"])
            assert row["source"] == ("calibrated (published)" if fitted else "modeled")
            assert (row["ms"] is not None and row["ms"] > 0) or any("no published" in n for n in row["notes"])
        assert estimates["memory"]["megabytes"]["fp32"] > estimates["memory"]["megabytes"]["int8"] > 0


def test_calibrating_a_device_needs_its_agent(cache, capsys):
    assert main(["calibrate", "--target", "rpi5"]) == 2
    assert "needs measurements on the device: pass --agent URL --token T" in capsys.readouterr().err


def test_memory_estimate_of_a_chain(tmp_path):
    import torch

    from edgekit.exporters.memory import estimate_memory
    from edgekit.exporters.onnx import export_onnx
    from edgekit.runtimes.spec import TensorSpec

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 4, 1))
    export_onnx(net, (TensorSpec("x", (1, 3, 32, 32)),), (torch.randn(1, 3, 32, 32),), tmp_path / "m.onnx")
    memory = estimate_memory(tmp_path / "m.onnx")
    assert memory.weight_elems == 16 * 27 + 16 + 4 * 16 + 4
    # the peak is at the ReLU: its 16x32x32 input and output are live together
    assert memory.peak_activation_elems == 2 * 16 * 32 * 32
    assert memory.bytes("int8") * 4 == memory.bytes("fp32")
