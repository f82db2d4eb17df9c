"""The one latency chooser (edgekit.targets.estimate): measured > calibrated > modeled, the typed latency
entry and its JSON forms, and which units can run a bundle of a format at a precision."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgekit.cli import main
from edgekit.runtimes.errors import BundleError, TargetError
from edgekit.targets import load_target
from edgekit.targets.estimate import (
    LatencyEstimate,
    choose_basis,
    estimate,
    estimate_for_format,
    no_unit_reason,
    units_for_format,
)
from edgekit.targets.latency import OpCost


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    """The tiny bundle's op costs and model-file sha256, as the pipeline and ``targets show`` pass them."""
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.runtimes.bundle import sha256_file
    from edgekit.targets.profile import model_file

    path = model_file(tiny_bundle)
    return graph_stats(path).nodes, sha256_file(path)


def _fit_host_calibration(directory, threads=1):
    """A real calibration of the host's cpu at fp32, fitted to synthetic measurements and saved where edgekit looks."""
    from edgekit.targets.calibrated import fit_calibration
    from edgekit.targets.fitted import calibration_file

    sizes = (10, 20, 40, 60, 80, 100, 120, 160)
    models = [[OpCost("conv", m * 1_000_000, 1000, 10_000)] for m in sizes]
    calibration = fit_calibration(models, [0.1 + 0.04 * m for m in sizes], load_target("host"), "cpu", "fp32", threads)
    path = calibration_file(directory, "host", "cpu", "fp32", threads)
    path.parent.mkdir(parents=True, exist_ok=True)  # as edgekit calibrate does
    calibration.save(path)
    return calibration


def _store_profile(bundle, target="host", threads=1):
    from edgekit.targets.profile import profile_model
    from edgekit.targets.store import LatencyStore

    result = profile_model(bundle, threads=1, warmup=1, runs=5)
    record = replace(result.to_record(target, "fp32"), threads=threads)
    with LatencyStore() as store:
        store.record(record)
    return record


# --- the order --------------------------------------------------------------------------------------


def test_order_is_measured_then_calibrated_then_modeled(tiny_bundle, tiny, cache):
    ops, sha = tiny
    host = load_target("host")

    def best():
        return estimate(host, "cpu", "fp32", ops=ops, model_sha256=sha, fmt="onnx", threads=1)

    modeled = best()
    assert (modeled.source, modeled.target, modeled.unit, modeled.runtime, modeled.format, modeled.threads) == \
        ("modeled", "host", "cpu", "onnxruntime", "onnx", 1)
    assert modeled.ms > 0 and modeled.details["compute_ms"] >= 0
    assert not (cache / "latency.sqlite").exists()  # looking up creates no store

    calibration = _fit_host_calibration(cache)
    calibrated = best()
    assert calibrated.source == "calibrated" and calibrated.ms == pytest.approx(calibration.predict(ops).ms)
    assert calibrated.ms != pytest.approx(modeled.ms)

    record = _store_profile(tiny_bundle)
    measured = best()
    assert (measured.source, measured.ms, measured.p90_ms, measured.runs) == ("measured", record.p50_ms, record.p90_ms, 5)
    assert (measured.runtime, measured.precision, measured.threads) == ("onnxruntime", "fp32", 1)

    # the measurement is of 1 thread, fp32: other settings fall back to the calibration or the roofline
    assert estimate(host, "cpu", "fp32", ops=ops, model_sha256=sha, threads=2).source == "modeled"
    assert estimate(host, "cpu", "int8", ops=ops, model_sha256=sha, threads=1).source == "modeled"
    assert estimate(host, "cpu", "fp32", ops=ops, threads=1).source == "calibrated"  # no sha256: not looked up


def test_a_unit_that_cannot_run_the_format_never_takes_its_measurement(tiny_bundle, tiny, cache):
    ops, sha = tiny
    jetson = load_target("jetson")
    cores = jetson.unit("cpu").cores
    record = _store_profile(tiny_bundle, jetson.name, threads=cores)  # as an agent on the Jetson would store it

    # all cores (threads None) is what a deployed bundle runs with: the measurement at that count is found
    entries, note = estimate_for_format(jetson, "onnx", "fp32", ops=ops, model_sha256=sha)
    (entry,) = entries
    assert note is None and (entry.unit, entry.source, entry.threads) == ("cpu", "measured", cores)
    assert entry.ms == round(record.p50_ms, 4)
    # (the gpu's fp16 prediction is the fit to published TensorRT points, never the onnx measurement)
    assert estimate(jetson, "gpu", "fp16", ops=ops, model_sha256=sha, fmt="onnx").source == "calibrated (published)"
    on_gpu = estimate(jetson, "gpu", "fp16", ops=ops, fmt="onnx")
    assert (on_gpu.runtime, on_gpu.format) == ("tensorrt", None)


def test_blocks_use_a_table_before_the_calibration(tmp_path):
    from edgekit.targets.lut import BlockTable

    host = load_target("host")
    key = "Conv-input:8x8x3-output:4x4x16"
    table = BlockTable("host", "onnxruntime", "fp32", 1, {key: 0.25}, scale=2.0, intercept_ms=0.5)
    calibration = _fit_host_calibration(tmp_path)
    ops = [OpCost("conv", 1_000_000)]

    by_blocks = estimate(host, "cpu", "fp32", blocks=[key, key], table=table, threads=1, directory=tmp_path)
    assert (by_blocks.source, by_blocks.ms) == ("calibrated", 2.0 * 0.5 + 0.5)
    by_ops = estimate(host, "cpu", "fp32", ops=ops, table=table, threads=1, directory=tmp_path)
    assert by_ops.ms == pytest.approx(calibration.predict(ops).ms)  # a table needs blocks

    # the same order for search (SubnetLatency): table > calibration > roofline
    assert choose_basis(host, "cpu", "fp32", 1, table=table, directory=tmp_path).method(blocks=True) == "table"
    assert choose_basis(host, "cpu", "fp32", 1, directory=tmp_path).method(blocks=True) == "calibration"
    assert choose_basis(host, "cpu", "fp32", 2, directory=tmp_path).source(blocks=True) == "modeled"
    with pytest.raises(TargetError, match="unit 'cpu' of jetson-orin-nano does not run fp16"):
        choose_basis(load_target("jetson"), "cpu", "fp16")


def test_an_unpublished_peak_gives_no_number_and_says_why(tmp_path):
    # snapdragon's cpu runs onnx but publishes no peak: the bundle gets no entry, and the note names the unit
    snapdragon = load_target("snapdragon-8-gen-3")
    found = estimate(snapdragon, "cpu", "fp32", ops=[OpCost("conv", 1_000_000)], fmt="onnx", directory=tmp_path)
    assert (found.ms, found.source, found.runtime) == (None, "modeled", "onnxruntime")
    entries, note = estimate_for_format(snapdragon, "onnx", "fp32", ops=[OpCost("conv", 1_000_000)], directory=tmp_path)
    assert entries == () and note == "cpu: no published fp32 peak for unit cpu"


# --- the entry --------------------------------------------------------------------------------------


def test_json_round_trip_and_old_entries_with_device():
    entry = LatencyEstimate(4.1213, "modeled", "jetson-orin-nano", "cpu", "fp32", "onnxruntime", "onnx", None, 1,
                            ("fp32 peak used",), details={"compute_ms": 3.0})
    data = entry.to_json()
    assert list(data)[:9] == ["source", "target", "unit", "runtime", "format", "precision", "threads", "batch", "ms"]
    assert "device" not in data and LatencyEstimate.from_json(json.loads(json.dumps(data))) == entry

    # what edgekit wrote before: "device" for the target, no unit/precision on the host's measurement
    old_host = {"source": "measured", "device": "host", "cpu": "Some CPU", "runtime": "onnxruntime", "threads": 1,
                "batch": 1, "ms": 1.2554, "p90_ms": 1.4, "runs": 50}
    host = LatencyEstimate.from_json(old_host)
    assert (host.target, host.unit, host.precision, host.p90_ms, host.runs, host.details) == \
        ("host", None, None, 1.4, 50, {"cpu": "Some CPU"})
    assert host.summary() == "latency: 1.255 ms p50 (measured on host, onnxruntime, 1 thread(s), batch 1)"
    assert LatencyEstimate.from_json(host.to_json()) == host
    old_target = {"source": "modeled", "device": "jetson-orin-nano", "unit": "cpu", "runtime": "onnxruntime",
                  "precision": "fp32", "batch": 1, "ms": 4.1213, "notes": []}
    assert LatencyEstimate.from_json(old_target).summary() == \
        "latency on jetson-orin-nano cpu (onnxruntime, fp32): 4.121 ms (modeled, batch 1)"


@pytest.mark.parametrize("change, message", [
    ({"source": "guessed"}, "field 'source': expected one of measured, calibrated, calibrated \\(published\\), modeled"),
    ({"device": None}, "field 'target': expected a target name"),
    ({"ms": "fast"}, "field 'ms': expected a number or null"),
    ({"threads": 0}, "field 'threads': expected a whole number >= 1 or null"),
])
def test_a_malformed_entry_is_named(change, message):
    entry = {"source": "modeled", "device": "jetson-orin-nano", "unit": "cpu", "ms": 1.0, **change}
    with pytest.raises(BundleError, match=f"^out/manifest.json: latency\\[0\\]: {message}"):
        LatencyEstimate.from_json(entry, "out/manifest.json: latency[0]")


# --- which units run a bundle -----------------------------------------------------------------------


@pytest.mark.parametrize("target, fmt, precision, units", [
    ("jetson", "onnx", "fp32", ["cpu"]),  # its gpu runs TensorRT engines only
    ("jetson", "onnx", "int8", ["cpu"]),
    ("jetson", "onnx", "fp16", []),
    ("jetson", "tensorrt", "fp16", ["gpu"]),
    ("jetson-agx-orin", "tensorrt", "int8", ["gpu", "dla0", "dla1"]),  # default unit first
    ("rpi5", "onnx", "fp16", ["cpu"]),
    ("rpi5", "tflite", "int8", ["cpu"]),
    ("rpi4", "onnx", "fp16", ["cpu"]),  # an fp16 model computes in fp32 on the A72 (published fp16 points exist)
    ("host", "onnx", "fp32", ["cpu"]),
    ("snapdragon-8-gen-3", "onnx", "int8", ["npu", "cpu"]),
])
def test_units_for_format(target, fmt, precision, units):
    assert [u.name for u in units_for_format(load_target(target), fmt, precision)] == units


def test_no_unit_gives_a_one_line_reason_and_no_entries(tmp_path):
    jetson = load_target("jetson")
    assert no_unit_reason(jetson, "onnx", "fp16") == "no unit runs onnx fp16 (gpu runs tensorrt; cpu runs onnx at fp32, int8)"
    entries, note = estimate_for_format(jetson, "onnx", "fp16", ops=[OpCost("conv", 1)], directory=tmp_path)
    assert entries == () and note == no_unit_reason(jetson, "onnx", "fp16")
    assert [u.name for u in units_for_format(jetson, "onnx", "int8", unit="cpu")] == ["cpu"]
    assert units_for_format(jetson, "onnx", "int8", unit="gpu") == ()


# --- the CLI uses it --------------------------------------------------------------------------------


def test_targets_show_prints_the_measured_value_after_profile(tiny_bundle, cache, capsys):
    assert main(["profile", str(tiny_bundle), "--threads", "1", "--runs", "5", "--warmup", "1", "--json"]) == 0
    p50 = json.loads(capsys.readouterr().out)["stats"]["p50_ms"]

    assert main(["targets", "show", "host", "--model", str(tiny_bundle), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["model_estimates"]["latency"]
    row = next(r for r in rows if (r["unit"], r["precision"]) == ("cpu", "fp32"))
    assert LatencyEstimate.from_json(row).source == "measured" and row["ms"] == pytest.approx(p50)
    assert (row["target"], row["runtime"], row["format"], row["threads"]) == ("host", "onnxruntime", "onnx", 1)

    assert main(["targets", "show", "host", "--model", str(tiny_bundle)]) == 0
    shown = capsys.readouterr().out
    line = next(line for line in shown.splitlines() if f"{p50:.3f}" in line)
    assert "measured" in line and "fp32" in line


def test_export_consults_the_store_for_this_very_file(tiny_bundle, cache, tmp_path):
    """The pipeline's target latency comes from the one chooser: a measurement of the exported file (same
    sha256, stored by `edgekit profile --agent` on the device) beats the model."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    jetson = load_target("jetson")
    request = ExportRequest(out=tmp_path / "b", model=ModelRequest("tests.fixtures.tiny_models:tiny_cnn"),
                            target="jetson", measure=MeasureConfig(runs=0))
    (before,) = export_bundle(request).manifest.latency
    assert (before["source"], before["target"], before["unit"]) == ("modeled", "jetson-orin-nano", "cpu")
    record = _store_profile(tmp_path / "b", jetson.name, threads=jetson.unit("cpu").cores)
    (after,) = export_bundle(request).manifest.latency  # the export is deterministic: same file, same sha256
    assert (after["source"], after["ms"], after["threads"]) == ("measured", round(record.p50_ms, 4), jetson.unit("cpu").cores)
