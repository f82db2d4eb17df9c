"""edgekit lut build / import / list on a tiny space, against the real onnxruntime on this host."""

from __future__ import annotations

import json

from edgekit.cli import main


def test_build_then_list_then_predict(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path))
    code = main(["lut", "build", "--space", "ofa-mbv3-tiny", "--resolutions", "32", "--fit-subnets", "3",
                 "--runs", "5", "--json"])
    assert code == 0
    built = json.loads(capsys.readouterr().out)
    assert built["blocks"] == 69 and built["fitted_on"] == 3 + 4  # 3 random + the smallest and largest at both ends

    from edgekit.models.ofa import get_space, sample
    from edgekit.models.ofa.blocks import subnet_blocks
    from edgekit.targets.lut import BlockTable

    table = BlockTable.load(built["file"])
    space = get_space("ofa-mbv3-tiny")
    import random

    config = sample(space, random.Random(9)).replace(r=32)
    prediction = table.predict([b.key for b in subnet_blocks(config, space)])
    assert prediction.ms > 0 and prediction.source == "calibrated"

    assert main(["lut", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["meta"]["space"] for t in listed] == ["ofa-mbv3-tiny"]


def test_import_rejects_unknown_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path))
    good = tmp_path / "t.yaml"
    good.write_text("Logits-input:1x1x1280-output:1000:\n  mean: 0.05\n")
    assert main(["lut", "import", str(good), "--target", "note10"]) == 0
    assert "imported 1 blocks" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("Dense-input:7:\n  mean: 1\n")
    assert main(["lut", "import", str(bad), "--target", "note10"]) == 1
    assert "unknown block key 'Dense-input:7'" in capsys.readouterr().err


def test_precision_variants_for_timing_are_real_int8_and_fp16(tmp_path):
    import onnx
    import torch

    from edgekit.exporters.onnx import export_onnx
    from edgekit.profiling import precision_variant
    from edgekit.runtimes.spec import TensorSpec

    spec = (TensorSpec("input", (1, 3, 16, 16)),)
    export_onnx(torch.nn.Conv2d(3, 8, 3), spec, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx")
    int8 = {n.op_type for n in onnx.load(str(precision_variant(tmp_path / "m.onnx", spec, "int8"))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= int8
    fp16 = onnx.load(str(precision_variant(tmp_path / "m.onnx", spec, "fp16")))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    assert precision_variant(tmp_path / "m.onnx", spec, "fp32") == tmp_path / "m.onnx"
