"""materialize(): parity with the supernet, no shared state, and analytic cost vs the ONNX graph.

Its speed is measured in benchmarks/ofa_extract.py, not asserted here."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from edgekit.models.ofa import (
    OFASubnet,
    OFASupernet,
    count_macs,
    count_params,
    get_space,
    largest,
    materialize,
    randomize_weights,
    sample,
    smallest,
)
from edgekit.models.ofa.layers import ElasticMBConv

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def shapes_net():
    return randomize_weights(OFASupernet(get_space("ofa-mbv3-shapes")), seed=1).eval()


@pytest.fixture(scope="module")
def w10_net():
    return randomize_weights(OFASupernet(get_space("ofa-mbv3-w1.0")), seed=2).eval()


def _configs(space, n, seed, resolution=None):
    rng = random.Random(seed)
    out = [largest(space), smallest(space)] + [sample(space, rng) for _ in range(n - 2)]
    return [c.replace(r=resolution) if resolution else c for c in out]


@pytest.mark.parametrize("which, resolution", [("shapes_net", None), ("w10_net", 128)])
def test_materialized_equals_supernet(which, resolution, request):
    net = request.getfixturevalue(which)
    worst = 0.0
    for cfg in _configs(net.space, 8, seed=5, resolution=resolution):
        x = torch.randn(2, 3, cfg.r, cfg.r, generator=torch.Generator().manual_seed(cfg.r))
        sub = materialize(net, cfg)
        with torch.no_grad():
            want, got = net(x, cfg), sub(x)
        assert want.std() > 1e-3  # outputs depend on the input
        worst = max(worst, (want - got).abs().max().item())
    assert worst <= 1e-6, worst


def test_subnet_is_plain_static_and_independent(shapes_net):
    space = shapes_net.space
    cfg = sample(space, random.Random(11))
    sub = materialize(shapes_net, cfg)
    assert isinstance(sub, OFASubnet) and not sub.training
    assert not any(isinstance(m, ElasticMBConv) for m in sub.modules())
    assert all(not p.is_meta for p in sub.parameters())
    assert len(sub.blocks) == sum(cfg.d)
    for j, b in enumerate(cfg.active_blocks(space)):
        dw = sub.blocks[j].dw.conv
        assert dw.kernel_size == (cfg.ks[b], cfg.ks[b]) and dw.out_channels == space.mid_width(b, cfg.e[b])
    before = shapes_net.blocks[0].dw.conv.weight.clone()
    with torch.no_grad():
        for p in sub.parameters():
            p.zero_()
    assert torch.equal(shapes_net.blocks[0].dw.conv.weight, before)
    # a plain module: state dict round-trips into a freshly built subnet of the same config
    fresh = OFASubnet(space, cfg)
    fresh.load_state_dict(sub.state_dict())


def test_kernel_transform_is_used(shapes_net):
    space = shapes_net.space
    cfg = largest(space).replace(ks=(3,) * space.num_blocks)
    sub = materialize(shapes_net, cfg)
    full = shapes_net.blocks[0].dw.conv.weight
    plain_crop = full[: sub.blocks[0].dw.conv.out_channels, :, 2:5, 2:5]
    assert not torch.allclose(sub.blocks[0].dw.conv.weight, plain_crop)  # matrices are not identity here


def _onnx_macs(model: nn.Module, resolution: int, tmp_path) -> int:
    import onnx
    from onnx import numpy_helper, shape_inference

    path = tmp_path / "net.onnx"
    x = torch.randn(1, 3, resolution, resolution)
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"])
    graph = shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              list(graph.value_info) + list(graph.output) + list(graph.input)}
    shapes.update({t.name: list(numpy_helper.to_array(t).shape) for t in graph.initializer})
    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            w, out = shapes[node.input[1]], shapes[node.output[0]]
            macs += out[1] * out[2] * out[3] * w[1] * w[2] * w[3]
        elif node.op_type in ("Gemm", "MatMul"):
            w = shapes[node.input[1]]
            macs += w[0] * w[1]
    return macs


@pytest.mark.parametrize("which, resolution, seed", [("shapes_net", None, 1), ("shapes_net", 36, 2), ("w10_net", 160, 3)])
def test_analytic_macs_and_params_match_onnx(which, resolution, seed, request, tmp_path):
    net = request.getfixturevalue(which)
    cfg = sample(net.space, random.Random(seed))
    cfg = cfg.replace(r=resolution) if resolution else cfg
    sub = materialize(net, cfg)
    assert count_params(cfg, net.space) == sum(p.numel() for p in sub.parameters())
    assert count_macs(cfg, net.space) == _onnx_macs(sub, cfg.r, tmp_path)
