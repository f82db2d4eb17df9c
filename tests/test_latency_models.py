"""Latency models: the roofline (modeled), block tables (incl. once-for-all YAML), the calibrated fit."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.runtimes.errors import TargetError
from edgekit.targets import load_target
from edgekit.targets.calibrated import FEATURES, Calibration, fit_calibration, nnls
from edgekit.targets.latency import OpCost, predict_ms
from edgekit.targets.lut import BlockTable, load_ofa_yaml

CONV = OpCost("conv", macs=100_000_000, weight_elems=50_000, activation_elems=1_000_000)


def test_roofline_is_compute_bound_for_big_convs_and_scales_with_peak():
    jetson = load_target("jetson")
    gpu = jetson.unit("gpu")
    fp32 = predict_ms([CONV], jetson, "gpu", "fp32")
    fp16 = predict_ms([CONV], jetson, "gpu", "fp16")
    # compute term = 2 x MACs / (peak x efficiency 0.4), plus the 0.01 ms per-op overhead
    expected = 2 * CONV.macs / (gpu.peak["fp32"] * 1e12 * 0.4) * 1e3 + 0.01
    assert fp32.ms == pytest.approx(expected)
    assert fp32.source == "modeled" and fp16.ms < fp32.ms
    assert fp32.memory_ms == pytest.approx((50_000 + 1_000_000) * 4 / (jetson.memory_bandwidth_gbps * 1e9) * 1e3)


def test_roofline_memory_bound_for_elementwise_on_cpu():
    rpi = load_target("rpi5")
    add = OpCost("elementwise", macs=0, weight_elems=0, activation_elems=3_000_000)
    p = predict_ms([add], rpi, "cpu", "fp32")
    assert p.ms == pytest.approx(3_000_000 * 4 / (rpi.memory_bandwidth_gbps * 1e9) * 1e3 + 0.004)


def test_accelerators_fuse_elementwise_ops():
    jetson = load_target("jetson")
    add = OpCost("elementwise", macs=0, weight_elems=0, activation_elems=3_000_000)
    assert predict_ms([CONV, add], jetson, "gpu", "fp16").ms == predict_ms([CONV], jetson, "gpu", "fp16").ms


def test_missing_numbers_are_reported_not_invented():
    pixel = load_target("pixel-8")
    p = predict_ms([CONV], pixel, "gpu", "fp16")
    assert p.ms is None and "no published fp16 peak for unit gpu" in p.notes
    host_like = predict_ms([CONV], load_target("rpi4"), "cpu", "fp32")
    assert host_like.ms > 0 and any("bandwidth not published" in n for n in host_like.notes)


def test_unsupported_precision_and_unit_are_errors():
    with pytest.raises(TargetError, match="unit 'cpu' of jetson-orin-nano does not run fp16"):
        predict_ms([CONV], load_target("jetson"), "cpu", "fp16")
    with pytest.raises(TargetError, match="has no unit 'npu'"):
        predict_ms([CONV], load_target("rpi4"), "npu", "fp32")


def test_threads_scale_a_cpu_peak():
    host = load_target("host")
    cores = host.unit("cpu").cores
    one = predict_ms([CONV], host, "cpu", "fp32", threads=1)
    every = predict_ms([CONV], host, "cpu", "fp32")
    assert one.compute_ms == pytest.approx(every.compute_ms * cores)


def test_nnls_recovers_nonnegative_coefficients():
    rng = np.random.default_rng(0)
    a = rng.random((40, 6))
    truth = np.array([1.5, 0.0, 2.0, 0.0, 0.25, 3.0])
    assert np.allclose(nnls(a, a @ truth), truth, atol=1e-8)
    b = a @ np.array([1.0, -2.0, 0, 0, 0, 0])  # the best non-negative fit must clamp, not go negative
    assert (nnls(a, b) >= 0).all()


def test_calibration_fits_measurements_and_round_trips(tmp_path):
    host = load_target("host")
    models = [[OpCost("conv", m * 1_000_000, 1000, m * 10_000), OpCost("elementwise", 0, 0, m * 5_000)] for m in range(5, 45, 4)]
    measured = [0.02 + 0.03 * m for m in range(5, 45, 4)]
    cal = fit_calibration(models, measured, host, "cpu", "fp32", threads=1)
    assert cal.train_median_abs_pct_error < 1.0
    p = cal.predict([OpCost("conv", 23_000_000, 1000, 230_000), OpCost("elementwise", 0, 0, 115_000)])
    assert p.source == "calibrated" and p.ms == pytest.approx(0.02 + 0.03 * 23, rel=0.02)
    cal.save(tmp_path / "cal.json")
    assert Calibration.load(tmp_path / "cal.json") == cal
    (tmp_path / "bad.json").write_text('{"target": "host"}')
    with pytest.raises(TargetError, match="bad.json: not an edgekit latency calibration"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(TargetError, match=f"at least {len(FEATURES)} measured models"):
        fit_calibration(models[:3], measured[:3], host, "cpu", "fp32")


def test_block_table_fit_and_missing_blocks(tmp_path):
    keys = [f"Conv-input:{r}x{r}x3-output:{r // 2}x{r // 2}x16" for r in (32, 64, 96, 128)]
    table = BlockTable("host", "onnxruntime", "fp32", 1, dict(zip(keys, (0.1, 0.3, 0.6, 1.0))))
    subnets = [[keys[0], keys[1]], [keys[1], keys[2]], [keys[2], keys[3]], [keys[0], keys[3]]]
    measured = [0.9 * sum(table.entries[k] for k in s) + 0.2 for s in subnets]
    fitted = table.fit(subnets, measured)
    assert fitted.scale == pytest.approx(0.9) and fitted.intercept_ms == pytest.approx(0.2)
    assert fitted.predict([keys[0], keys[2]]).ms == pytest.approx(0.9 * 0.7 + 0.2)
    with pytest.raises(TargetError, match="lacks 1 block"):
        fitted.predict(["Conv-input:8x8x3-output:4x4x16"])
    fitted.save(tmp_path / "t.json")
    assert BlockTable.load(tmp_path / "t.json") == fitted


def test_once_for_all_yaml_import(tmp_path):
    good = tmp_path / "note10.yaml"
    good.write_text(
        "Conv-input:224x224x3-output:112x112x16:\n  count: 10\n  mean: 1.21\n  std: 0.01\n"
        "expanded_conv-input:112x112x16-output:56x56x24-expand:48-kernel:3-stride:2-idskip:0-se:0-hs:0:\n  mean: 2.5\n"
    )
    table = load_ofa_yaml(good, "note10")
    assert table.entries["Conv-input:224x224x3-output:112x112x16"] == 1.21 and table.source == "ofa-yaml:note10.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:224x224x3-output:112x112x16:\n  mean: 1.0\nResBlock-input:7x7x3:\n  mean: 2.0\n")
    with pytest.raises(TargetError, match="bad.yaml: unknown block key 'ResBlock-input:7x7x3'"):
        load_ofa_yaml(bad, "x")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(TargetError, match="not a readable YAML latency table"):
        load_ofa_yaml(unsafe, "x")
    nomean = tmp_path / "nomean.yaml"
    nomean.write_text("Conv-input:224x224x3-output:112x112x16:\n  std: 0.1\n")
    with pytest.raises(TargetError, match="has no numeric 'mean'"):
        load_ofa_yaml(nomean, "x")


def test_graph_stats_classify_ops_for_the_models():
    import torch

    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.onnx import export_onnx
    from edgekit.runtimes.spec import TensorSpec

    net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, groups=8), torch.nn.Conv2d(8, 4, 1), torch.nn.Hardswish(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 3))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(net, (TensorSpec("x", (1, 8, 16, 16)),), (torch.randn(1, 8, 16, 16),), Path(tmp) / "m.onnx")
        kinds = [n.kind for n in graph_stats(Path(tmp) / "m.onnx").nodes]
    assert kinds[:2] == ["depthwise_conv", "conv"] and "matmul" in kinds and "elementwise" in kinds
