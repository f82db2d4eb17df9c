"""OFA block keys match once-for-all's table format and the blocks are the subnet's own."""

from __future__ import annotations

import random

import torch

from edgekit.models.ofa import OFASupernet, get_space, materialize, sample
from edgekit.models.ofa.blocks import build_block, space_blocks, subnet_blocks


def test_keys_follow_once_for_all_format_and_shapes_chain():
    space = get_space("ofa-mbv3-w1.0")
    config = sample(space, random.Random(4)).replace(r=224)
    blocks = subnet_blocks(config, space)
    assert blocks[0].key == "Conv-input:224x224x3-output:112x112x16"
    assert blocks[1].key == "expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
    for before, after in zip(blocks, blocks[1:]):
        assert (before.out_hw, before.out_ch) == (after.in_hw, after.in_ch)
    assert len(blocks) == 2 + sum(config.d) + 4


def test_block_modules_chain_to_the_materialized_subnet_shapes():
    space = get_space("ofa-mbv3-tiny")
    config = sample(space, random.Random(0))
    subnet = materialize(OFASupernet(space).eval(), config)
    x = torch.randn(1, 3, config.r, config.r)
    with torch.no_grad():
        h = subnet.first_block(subnet.stem(x))
        shapes = [tuple(subnet.stem(x).shape), tuple(h.shape)]
        for block in subnet.blocks:
            h = block(h)
            shapes.append(tuple(h.shape))
    specs = subnet_blocks(config, space)
    for spec, shape in zip(specs, shapes):
        module, input_shape = build_block(spec, space)
        with torch.no_grad():
            assert tuple(module(torch.randn(*input_shape)).shape) == shape


def test_space_blocks_are_distinct_and_cover_every_subnet():
    space = get_space("ofa-mbv3-tiny")
    table_keys = {b.key for b in space_blocks(space, [space.resolutions[0]])}
    rng = random.Random(1)
    for _ in range(20):
        config = sample(space, rng).replace(r=space.resolutions[0])
        assert {b.key for b in subnet_blocks(config, space)} <= table_keys


def test_analytic_block_ops_match_the_exported_graph(tmp_path):
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.onnx import export_onnx
    from edgekit.models.ofa.blocks import block_ops
    from edgekit.runtimes.spec import TensorSpec

    space = get_space("ofa-mbv3-w1.0")
    config = sample(space, random.Random(3)).replace(r=128)
    for spec in subnet_blocks(config, space)[:6] + subnet_blocks(config, space)[-4:]:
        module, shape = build_block(spec, space)
        export_onnx(module, (TensorSpec("input", shape),), (torch.randn(*shape),), tmp_path / "b.onnx")
        nodes = graph_stats(tmp_path / "b.onnx").nodes
        ops = block_ops(spec)
        assert sum(n.macs for n in nodes) == sum(o.macs for o in ops), spec.key
        graph_act = sum(n.activation_elems for n in nodes)
        assert abs(sum(o.activation_elems for o in ops) - graph_act) <= 0.05 * graph_act, spec.key
        graph_weights = sum(n.weight_elems for n in nodes)
        assert abs(sum(o.weight_elems for o in ops) - graph_weights) <= 0.01 * graph_weights + 16, spec.key
