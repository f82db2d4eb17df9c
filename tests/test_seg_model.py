"""The segmenter: output shapes of both heads, size checks, MACs, VWA's windows and cost, shipped weights."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from edgekit.models.seg.data import NUM_CLASSES, make_scenes
from edgekit.models.seg.model import SEG_PRESETS, SegConfig, analytic_macs, build_segmenter, count_macs
from edgekit.models.seg.source import load_builtin, weights_path
from edgekit.models.seg.train import evaluate
from edgekit.models.seg.vwformer import VaryingWindowAttention, attention_macs, vwa_macs
from edgekit.runtimes.errors import UsageError

MOBILE = SEG_PRESETS["mobile"]


@pytest.mark.parametrize("head", ["simple", "vwformer"])
@pytest.mark.parametrize("hw", [(64, 64), (32, 96)])
def test_output_shapes_and_macs(head, hw):
    config = replace(MOBILE, head=head)
    net = build_segmenter(config).eval()
    with torch.no_grad():
        assert tuple(net(torch.zeros(2, 3, *hw)).shape) == (2, NUM_CLASSES, *hw)
    assert analytic_macs(config, 96) == count_macs(net, 96)


def test_large_preset_is_larger_and_counted_exactly():
    large = SEG_PRESETS["large"]
    assert analytic_macs(large, 64) == count_macs(build_segmenter(large), 64) > 5 * analytic_macs(MOBILE, 64)


def test_sizes_that_are_not_multiples_of_the_stride_are_refused():
    net = build_segmenter(MOBILE).eval()
    with pytest.raises(UsageError, match="multiples of 32 .* got 64x48"):
        net(torch.zeros(1, 3, 64, 48))
    with pytest.raises(UsageError, match="head 'fpn' is not one of simple, vwformer"):
        SegConfig((8, 16, 32, 64), (1, 1, 1, 1), head="fpn")


@pytest.mark.parametrize("ratio", [1, 2, 4])
def test_vwa_context_windows_are_the_rescaled_centred_windows(ratio):
    torch.manual_seed(0)
    vwa = VaryingWindowAttention(8, window=4, ratio=ratio).eval()
    x = torch.randn(1, 8, 12, 8)
    p, pad = 4, (ratio - 1) * 4 // 2
    full = vwa.key_value(vwa.rescale(F.pad(x, (pad,) * 4)))
    context = vwa._context(x, 3, 2)
    for i in range(3):
        for j in range(2):  # window (i, j)'s context: the R*P x R*P square centred on it, re-scaled to P x P
            r0, c0 = i * p // ratio, j * p // ratio
            expected = full[:, :, r0:r0 + p, c0:c0 + p].reshape(1, 16, p * p)
            assert torch.equal(context[:, :, i, j], expected)


@pytest.mark.parametrize("ratio", [2, 4])
def test_vwa_attention_costs_what_local_window_attention_costs(ratio):
    channels, hw, window = 48, 16, 4
    lwa = vwa_macs(channels, hw, window, 1)["attention"]
    assert vwa_macs(channels, hw, window, ratio)["attention"] == lwa == attention_macs(channels, hw, window, ratio)
    assert attention_macs(channels, hw, window, ratio, rescale=False) == ratio ** 2 * lwa  # without re-scaling

    def attention_flops(r: int) -> int:  # measured: the two batched products of the module itself
        vwa = VaryingWindowAttention(channels, window, r).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            vwa(torch.zeros(1, channels, hw, hw))
        counts = counter.get_flop_counts()["Global"]
        return sum(v for k, v in counts.items() if "bmm" in str(k) or "matmul" in str(k))

    assert attention_flops(ratio) == attention_flops(1) == 2 * lwa  # 2 FLOPs per MAC
    # the whole head counts its re-scaling convolutions too (analytic_macs == hooks, test above)
    assert analytic_macs(replace(MOBILE, head="vwformer"), 64) > analytic_macs(MOBILE, 64)


def test_shipped_seg_simple_reaches_its_recorded_val_miou():
    net, record = load_builtin("seg-simple")
    assert record is not None and weights_path("seg-simple").stat().st_size < 4_000_000
    assert record["val"]["miou"] > 0.5 and record["variants"]["large"]["val_miou"] > record["val"]["miou"] + 0.03
    images, labels = make_scenes(record["val"]["check_scenes"], 64, split="val")
    measured = evaluate(net, images, labels, NUM_CLASSES).miou
    assert abs(measured - record["val"]["check_miou"]) < 0.005
    assert json.loads(weights_path("seg-simple").with_suffix(".json").read_text())["seed"] == 0


def test_exported_segmenter_resizes_by_constant_scales(tmp_path):
    """Regression: the resizes took their output size from the input's shape, which added Shape / Gather /
    Concat / Cast ops before each Resize in the bundle (0.183 vs 0.151 ms for the 50% level at 64 px)."""
    import numpy as np
    import onnx

    import edgekit.runtimes as rt
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    export_bundle(ExportRequest(out=tmp_path / "b", model=ModelRequest("seg-simple"), measure=MeasureConfig(runs=0)))
    ops = {node.op_type for node in onnx.load(str(tmp_path / "b" / "model.onnx")).graph.node}
    assert ops <= {"Conv", "Relu", "Add", "Resize", "Constant"}, ops
    net, _ = load_builtin("seg-simple")
    image = make_scenes(2, 64, split="val")[0]
    session = rt.load(tmp_path / "b", threads=1)
    (logits,) = session.run({session.inputs[0].name: image[:1]}).values()
    with torch.no_grad():
        expected = net.float()(torch.from_numpy(image[:1])).numpy()
    assert np.abs(logits - expected).max() < 1e-3
