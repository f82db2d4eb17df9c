"""Measurement on the host: whole-model stats, per-node times from onnxruntime's trace, device facts."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from edgekit.cli import main
from edgekit.runtimes.bundle import read_bundle, sha256_file
from edgekit.runtimes.errors import ModelLoadError, UsageError
from edgekit.targets.measure import LatencyStats
from edgekit.targets.profile import NodeTime, ProfileResult, device_facts, parse_trace, profile_model
from edgekit.targets.store import LatencyStore


def export_tiny_onnx(path: Path) -> Path:
    """Two convolutions and a linear head at 32x32: enough work that kernel time dominates a run."""
    import torch
    from torch import nn

    from edgekit.exporters.onnx import export_onnx
    from edgekit.runtimes.spec import TensorSpec

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    export_onnx(model, (TensorSpec("input", ("batch", 3, 32, 32)),), (torch.zeros(1, 3, 32, 32),), path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_profile_bare_onnx_with_per_node_times(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the trace goes here, and must be gone after
    result = profile_model(tiny_onnx, threads=1, warmup=3, runs=15, per_node=True)
    assert not list(tmp_path.iterdir())
    assert result.stats.runs == 15 and result.stats.warmup == 3 and result.stats.source == "measured"
    assert 0 < result.stats.p50_ms <= result.stats.p90_ms <= result.stats.p99_ms
    assert result.model_sha256 == sha256_file(tiny_onnx)
    assert result.runtime == "onnxruntime" and result.runtime_version and result.threads == 1
    ops = {n.op_type for n in result.per_node}
    assert "Conv" in ops and "Gemm" in ops
    assert [n.ms for n in result.per_node] == sorted((n.ms for n in result.per_node), reverse=True)
    node_sum = sum(n.ms for n in result.per_node)
    # kernels are most of a run; the rest is session and Python overhead. A separate session, so loose bounds.
    assert result.stats.p50_ms / 20 < node_sum < result.stats.p50_ms * 3, (node_sum, result.stats.p50_ms)


def test_profile_without_per_node_and_json(tiny_onnx):
    result = profile_model(tiny_onnx, warmup=1, runs=3)
    assert result.per_node == ()
    data = json.loads(json.dumps(result.to_json()))
    assert data["stats"]["runs"] == 3 and data["per_node"] == [] and len(data["model_sha256"]) == 64
    assert ProfileResult.from_json(data) == result


def test_profile_bundle_uses_its_model_file(tiny_bundle):
    result = profile_model(tiny_bundle, warmup=1, runs=3)
    assert result.model_sha256 == read_bundle(tiny_bundle).manifest.files["model.onnx"]["sha256"]


def test_profile_errors(tiny_onnx, tmp_path):
    with pytest.raises(UsageError, match="threads"):
        profile_model(tiny_onnx, threads=0)
    with pytest.raises(UsageError, match="runs"):
        profile_model(tiny_onnx, runs=0)
    with pytest.raises(ModelLoadError, match="no such file"):
        profile_model(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    with pytest.raises(ModelLoadError, match="bad.onnx: onnxruntime cannot load it"):
        profile_model(bad)


def test_from_json_names_the_bad_field():
    good = ProfileResult(LatencyStats(1.0, 1.1, 1.2, 1.05, 0.9, 5, 1), (NodeTime("c", "Conv", 0.5),), "f" * 64,
                         "onnxruntime", "1.32.0", 1).to_json()
    with pytest.raises(ValueError, match="'model_sha256'"):
        ProfileResult.from_json({k: v for k, v in good.items() if k != "model_sha256"})
    with pytest.raises(ValueError, match="stats.p50_ms"):
        ProfileResult.from_json({**good, "stats": {**good["stats"], "p50_ms": "fast"}})
    with pytest.raises(ValueError, match="expected an object"):
        ProfileResult.from_json([good])


def test_parse_trace_skips_warmup_sums_loops_and_takes_medians():
    def run(ts: int, nodes: list[tuple[str, str, int]]) -> list[dict]:
        events = [{"cat": "Node", "name": f"{n}_kernel_time", "ts": ts + 1 + i, "dur": d, "args": {"op_name": op}}
                  for i, (n, op, d) in enumerate(nodes)]
        return events + [{"cat": "Session", "name": "model_run", "ts": ts, "dur": 900}]

    events = run(0, [("conv", "Conv", 50_000)])  # a slow warm-up run: excluded
    events += run(1000, [("conv", "Conv", 100), ("loop_body", "Add", 10), ("loop_body", "Add", 10)])
    events += run(2000, [("conv", "Conv", 300), ("loop_body", "Add", 20)])
    events += run(3000, [("conv", "Conv", 200)])  # loop_body absent: counts 0 in this run
    events.append({"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5})
    nodes = parse_trace(events, runs=3)
    assert nodes == (NodeTime("conv", "Conv", 0.2), NodeTime("loop_body", "Add", 0.02))


def test_device_facts():
    facts = device_facts()
    assert facts["logical_cores"] >= 1 and isinstance(facts["flags"], list)
    assert facts["onnxruntime"] and "CPUExecutionProvider" in facts["providers"]
    assert {"cpu_model", "memory_gb", "os", "machine"} <= set(facts)
    json.dumps(facts)


def test_cli_profile_on_host_stores_a_model_record(tiny_onnx, tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    assert main(["profile", str(tiny_onnx), "--runs", "5", "--warmup", "1", "--store", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "measured on host" and data["target"] == "host" and data["store"] == str(db)
    with LatencyStore(db) as store:
        rec = store.lookup("host", sha256_file(tiny_onnx), runtime="onnxruntime", precision="fp32", threads=1)
    assert rec is not None and rec.p50_ms == data["stats"]["p50_ms"] and rec.runs == 5 and rec.kind == "model"

    assert main(["profile", str(tiny_onnx), "--runs", "5", "--warmup", "1", "--store", str(db), "--per-node"]) == 0
    shown = capsys.readouterr().out
    assert "p50 ms" in shown and "slowest" in shown and "Conv" in shown and "measured on host" in shown


def test_cli_profile_for_a_device_needs_its_agent(tiny_onnx, tmp_path, capsys):
    assert main(["profile", str(tiny_onnx), "--target", "rpi5", "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "measuring on raspberry-pi-5 needs the device's agent" in err and len(err.strip().splitlines()) == 1
    assert main(["profile", str(tiny_onnx), "--agent", "http://127.0.0.1:9", "--token", "t"]) == 2
    assert "not host" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()
