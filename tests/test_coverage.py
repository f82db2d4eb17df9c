"""Op coverage per unit (targets' [units.NAME.ops] tables, exporters/coverage.py): which nodes fall back or
fail, ``edgekit inspect --target``, export warnings and ``--strict``, and the Edge TPU kit (exporters/edgetpu.py)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from edgekit.cli import main
from edgekit.exporters.coverage import check_coverage, coverage_of_file
from edgekit.exporters.kits import kits_for
from edgekit.runtimes.errors import TargetError
from edgekit.targets import load_target, load_target_file

TINY = "tests.fixtures.tiny_models:tiny_cnn"


def _chain(*ops: str, shape=(1, 8)) -> object:
    """A chain x -> op1 -> op2 -> ... -> y of unary nodes named n0, n1, ..."""
    names = ["x", *[f"t{i}" for i in range(len(ops) - 1)], "y"]
    nodes = [h.make_node(op, [names[i]], [names[i + 1]], name=f"n{i}") for i, op in enumerate(ops)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                         [h.make_tensor_value_info("y", T.FLOAT, list(shape))])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_shipped_tables_load_with_their_sources():
    orin = load_target("jetson-agx-orin")
    gpu, dla = orin.unit("gpu").ops, orin.unit("dla0").ops
    assert "onnx-tensorrt" in gpu.source and gpu.fallback is None and {"Conv", "LayerNormalization"} <= gpu.supported
    assert "DLA Supported Layers" in dla.source and dla.fallback == "gpu" and dla.split == "each"
    assert not dla.runs("HardSwish") and dla.runs("Conv")
    tpu = load_target("coral").unit("tpu").ops
    assert "coral.ai" in tpu.source and (tpu.fallback, tpu.split, tpu.max_innermost_dims) == ("cpu", "once", 3)
    assert load_target("jetson").unit("cpu").ops is None  # onnxruntime's CPU provider: every op
    assert load_target("coral").to_dict()["units"][0]["ops"]["fallback"] == "cpu"


def test_dla_moves_each_unsupported_node_to_the_gpu():
    report = check_coverage(_chain("Conv", "HardSwish", "Relu", "Erf", "Relu"), load_target("jetson-agx-orin"), "dla1")
    assert [(n.name, n.op_type, n.action) for n in report.nodes] == [
        ("n1", "HardSwish", "falls back to gpu"), ("n3", "Erf", "falls back to gpu")]
    assert report.total_nodes == 5 and report.fallback_fraction == pytest.approx(0.4)


def test_edge_tpu_cuts_the_graph_once_at_the_first_unsupported_node():
    report = check_coverage(_chain("Relu", "Relu", "Erf", "Relu", "Sigmoid"), load_target("coral"))
    assert [(n.name, n.reason) for n in report.nodes] == [
        ("n2", "not in the unit's op list"), ("n3", "after n2, where the graph is cut"), ("n4", "after n2, where the graph is cut")]
    assert report.summary() == ("coral-edgetpu unit tpu: 3 of 5 nodes fall back to cpu "
                                "(first: n2 (Erf), not in the unit's op list)")


def test_edge_tpu_flags_tensors_with_more_than_three_innermost_dims_above_one():
    report = check_coverage(_chain("Relu", shape=(2, 3, 4, 5)), load_target("coral"))
    assert [(n.name, n.reason) for n in report.nodes] == [
        ("n0", "output spans 4 innermost dimensions > 1 (the unit allows 3)")]
    assert check_coverage(_chain("Relu", shape=(1, 3, 4, 5)), load_target("coral")).nodes == ()


def test_a_unit_without_fallback_fails_the_build():
    report = check_coverage(_chain("Relu", "Det", shape=(1, 2, 2)), load_target("jetson"), "gpu")
    assert [(n.name, n.action) for n in report.nodes] == [("n1", "fails the build")] and report.fails
    unchecked = check_coverage(_chain("Det", shape=(1, 2, 2)), load_target("jetson"), "cpu")
    assert not unchecked.checked and "no op list" in unchecked.summary()


BOARD = """
name = "my-board"
description = "test board"
default_unit = "gpu"

[units.gpu]
kind = "gpu"
runtime = "tensorrt"
formats = ["tensorrt"]
precisions = ["fp32"]

[units.gpu.ops]
source = "test list"
supported = ["Conv", "Relu", "Gemm", "Flatten"]

[units.cpu]
kind = "cpu"
runtime = "onnxruntime"
formats = ["onnx"]
precisions = ["fp32"]
"""


@pytest.mark.parametrize("old, new, message", [
    ('supported = ["Conv", "Relu", "Gemm", "Flatten"]', 'supported = []', "units.gpu.ops.supported: expected a non-empty list"),
    ('source = "test list"', 'source = "test list"\nfallback = "npu"', "units.gpu.ops.fallback: 'npu' is not a unit"),
    ('source = "test list"', 'source = "test list"\nsplit = "twice"', "units.gpu.ops.split: expected one of each, once"),
    ('source = "test list"', 'source = "test list"\ncolour = 1', "units.gpu.ops.colour: unknown field"),
    ('source = "test list"\n', '', "units.gpu.ops.source: missing required field"),
])
def test_ops_table_mistakes_name_the_file_and_field(tmp_path, old, new, message):
    path = tmp_path / "my-board.toml"
    path.write_text(BOARD.replace(old, new))
    with pytest.raises(TargetError, match=f"my-board.toml: {message}"):
        load_target_file(path)


def test_inspect_lists_the_nodes_a_unit_will_not_run(tmp_path, capsys):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(_chain("Conv", "HardSwish", "Relu", shape=(1, 3, 8, 8)), str(path))
    assert main(["inspect", str(path), "--target", "jetson-agx-orin", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    reports = {r["unit"]: r for r in data["op_coverage"]["model"]}
    assert set(reports) == {"gpu", "dla0", "dla1"} and reports["gpu"]["nodes"] == []
    assert [(n["name"], n["action"]) for n in reports["dla0"]["nodes"]] == [("n1", "falls back to gpu")]
    assert main(["inspect", str(path), "--target", "jetson-agx-orin", "--unit", "dla0"]) == 0
    shown = capsys.readouterr().out
    assert "jetson-agx-orin unit dla0: 1 of 3 nodes fall back to gpu (first: n1 (HardSwish)" in shown


def test_export_warns_and_strict_fails_naming_the_nodes(tmp_path, capsys):
    board = tmp_path / "my-board.toml"
    board.write_text(BOARD)
    args = ["export", "--model", TINY, "--target-file", str(board), "--bench-runs", "0"]
    # tiny_cnn: Conv, Relu, ReduceMean, Gemm; the board's gpu list has no ReduceMean and no fallback
    code = main([*args, "--out", str(tmp_path / "strict"), "--strict"])
    captured = capsys.readouterr()
    assert code == 1 and not (tmp_path / "strict").exists()
    assert "--strict: model.onnx: 1 node(s) my-board unit gpu cannot run: /ReduceMean (ReduceMean) (test list)" in captured.err
    assert main([*args, "--out", str(tmp_path / "warn")]) == 0
    shown = capsys.readouterr().out
    assert "warning: my-board unit gpu: 1 of 4 nodes fail the build (first: /ReduceMean (ReduceMean)" in shown
    manifest = json.loads((tmp_path / "warn" / "manifest.json").read_text())
    assert manifest["validation"]["op_coverage"]["model"]["nodes"][0]["op_type"] == "ReduceMean"


def test_kits_follow_the_units_runtimes_not_target_names():
    assert [k.runtime for k in kits_for(load_target("jetson-agx-orin"), "onnx", "int8")] == ["tensorrt"]
    assert kits_for(load_target("jetson"), "tflite", "fp32") == []
    assert [k.runtime for k in kits_for(load_target("coral"), "tflite", "int8")] == ["edgetpu"]
    assert kits_for(load_target("coral"), "tflite", "fp32") == []  # the Edge TPU runs full int8 only
    assert kits_for(load_target("rpi5"), "onnx", "fp32") == []


def test_edge_tpu_kit_on_a_hand_made_file(tmp_path):
    """The kit around a .tflite path; the file here is hand-made (not a real model), so coverage says it could
    not read the graph, and compile_edgetpu.sh runs a fake edgetpu_compiler to check the documented flags."""
    from edgekit.exporters.edgetpu import EDGETPU_FILES, write_edgetpu_kit

    bundle = tmp_path / "D"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"TFL3 hand-made")
    record = write_edgetpu_kit(bundle / "model.tflite", bundle, load_target("coral"), "int8", (), {})
    assert record["files"] == list(EDGETPU_FILES) and record["unit"] == "tpu" and record["coverage"] is None
    assert "coverage_note" in record
    readme = (bundle / "EDGETPU.md").read_text()
    assert "bash compile_edgetpu.sh" in readme and "Not verified: edgetpu_compiler was not run" in readme
    bash = shutil.which("bash")
    if bash is None:
        return
    assert subprocess.run([bash, "-n", str(bundle / "compile_edgetpu.sh")]).returncode == 0
    fake = tmp_path / "bin" / "edgetpu_compiler"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    done = subprocess.run([bash, str(bundle / "compile_edgetpu.sh")], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{fake.parent}:/usr/bin:/bin"})
    if platform.machine() != "x86_64":
        assert done.returncode == 2 and "x86-64 hosts only" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert f"ARGS: -s -o {bundle}-edgetpu {bundle}/model.tflite" in done.stdout
    assert (tmp_path / "D-edgetpu").is_dir()  # beside the bundle: a bundle refuses unlisted files


def test_coral_export_writes_the_int8_tflite_and_the_edge_tpu_kit(tmp_path, capsys):
    """Through the TFLite exporter: the full-int8 .tflite, the kit, and the coverage of its real ops."""
    pytest.importorskip("litert_torch")
    from edgekit.exporters.tflite import tflite_stats

    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "D"
    code = main(["export", "--model", TINY, "--target", "coral", "--precision", "int8", "--calib-data", str(calib),
                 "--out", str(out), "--bench-runs", "0"])
    shown = capsys.readouterr().out
    assert code == 0, shown
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["format"], manifest["precision"]) == ("tflite", "int8")
    assert set(manifest["files"]) == {"model.tflite", "compile_edgetpu.sh", "EDGETPU.md"}
    kit = manifest["extra"]["kits"]["edgetpu"]
    assert sorted(tflite_stats(out / "model.tflite").ops) == ["Conv", "Gemm", "ReduceMean", "Transpose"]
    assert kit["coverage"]["total_nodes"] == 5 and kit["coverage"]["nodes"] == []  # all on the Edge TPU
    assert "edgekit predicts all 5 ops map to the Edge TPU" in (out / "EDGETPU.md").read_text()
    assert "edgetpu build kit: compile_edgetpu.sh, EDGETPU.md" in shown and "warning:" not in shown
    bash = shutil.which("bash")
    if bash:
        assert subprocess.run([bash, "-n", str(out / "compile_edgetpu.sh")]).returncode == 0
