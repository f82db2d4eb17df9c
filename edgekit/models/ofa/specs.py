"""The blocks of a subnet as pure specs (no torch): once-for-all table keys and per-block op costs.

Keys use once-for-all's MobileNetV3 table format (``Conv-input:224x224x3-output:112x112x16``,
``expanded_conv-...-expand:48-kernel:3-stride:2-idskip:0-se:0-hs:0``, ``Conv_1``, ``AvgPool2D``,
``Conv_2``, ``Logits``), so a table measured by edgekit and one published by once-for-all are read alike.
Latency prediction and the search read only this module; :mod:`edgekit.models.ofa.blocks` builds the
torch modules of these specs for timing.

Example:
    >>> from edgekit.models.ofa import get_space, smallest
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> blocks = subnet_blocks(smallest(space, 224), space)
    >>> blocks[0].key, blocks[-1].key
    ('Conv-input:224x224x3-output:112x112x16', 'Logits-input:1x1x1280-output:1000')
    >>> blocks[0].ops()[0].kind, blocks[0].weight_elems
    ('conv', 448)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from edgekit.targets.latency import OpCost

from .config import SubnetConfig, largest
from .skeleton import OFASkeleton

__all__ = ["BlockSpec", "block_ops", "space_blocks", "subnet_blocks"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class BlockSpec:
    """One block: its layer type, input size (h, c), output size, and MBConv parameters if any."""

    kind: str  # Conv | expanded_conv | Conv_1 | AvgPool2D | Conv_2 | Logits
    in_hw: int
    in_ch: int
    out_hw: int
    out_ch: int
    mid: int = 0
    kernel: int = 0
    stride: int = 1
    se_hidden: int = 0
    act: str = "relu"
    expand: bool = True

    @cached_property
    def key(self) -> str:
        """The once-for-all table key (stable: block tables are stored under it)."""
        io = f"input:{self.in_hw}x{self.in_hw}x{self.in_ch}-output:"
        if self.kind == "Logits":
            return f"Logits-input:1x1x{self.in_ch}-output:{self.out_ch}"
        io += f"{self.out_hw}x{self.out_hw}x{self.out_ch}"
        if self.kind != "expanded_conv":
            return f"{self.kind}-{io}"
        idskip = int(self.stride == 1 and self.in_ch == self.out_ch)
        return (f"expanded_conv-{io}-expand:{self.mid}-kernel:{self.kernel}-stride:{self.stride}"
                f"-idskip:{idskip}-se:{int(self.se_hidden > 0)}-hs:{int(self.act == 'h_swish')}")

    def ops(self) -> list[OpCost]:
        """The ops of the block's exported graph (:func:`block_ops`)."""
        return block_ops(self)

    @cached_property
    def weight_elems(self) -> int:
        """Weights after BatchNorm folding, in elements."""
        return sum(op.weight_elems for op in block_ops(self))

    @cached_property
    def activation_elems(self) -> int:
        """Elements live inside the block: its input, the expanded middle and its output."""
        return self.in_ch * self.in_hw ** 2 + self.mid * self.out_hw ** 2 + self.out_ch * self.out_hw ** 2


def subnet_blocks(config: SubnetConfig, space: OFASkeleton) -> list[BlockSpec]:
    """The blocks a materialized subnet executes, in order."""
    config.validate(space)
    hw = _ceil_div(config.r, space.stem_stride)
    blocks = [
        BlockSpec("Conv", config.r, space.in_channels, hw, space.stem_width, kernel=3, stride=space.stem_stride, act="h_swish"),
        BlockSpec("expanded_conv", hw, space.stem_width, hw, space.first_block_width, mid=space.stem_width, kernel=3,
                  stride=1, act="relu", expand=False),
    ]
    for b in config.active_blocks(space):
        stage = space.stage_of(b)
        mid = space.mid_width(b, config.e[b])
        out_hw = _ceil_div(hw, space.block_stride(b))
        blocks.append(BlockSpec(
            "expanded_conv", hw, space.block_in_width(b), out_hw, space.stage_widths[stage], mid=mid,
            kernel=config.ks[b], stride=space.block_stride(b), act=space.stage_acts[stage],
            se_hidden=space.se_width(mid) if space.stage_se[stage] else 0,
        ))
        hw = out_hw
    last = space.stage_widths[-1]
    blocks += [
        BlockSpec("Conv_1", hw, last, hw, space.final_expand_width, kernel=1, act="h_swish"),
        BlockSpec("AvgPool2D", hw, space.final_expand_width, 1, space.final_expand_width),
        BlockSpec("Conv_2", 1, space.final_expand_width, 1, space.feature_mix_width, kernel=1, act="h_swish"),
        BlockSpec("Logits", 1, space.feature_mix_width, 1, space.num_classes),
    ]
    return blocks


def space_blocks(space: OFASkeleton, resolutions: Iterable[int]) -> list[BlockSpec]:
    """Every distinct block any subnet of ``space`` runs at ``resolutions`` (deduplicated by key)."""
    found: dict[str, BlockSpec] = {}
    for r in resolutions:
        base = largest(space, r)
        for k in space.ks_choices:
            for e in space.e_choices:
                config = base.replace(ks=(k,) * space.num_blocks, e=(e,) * space.num_blocks)
                for spec in subnet_blocks(config, space):
                    found.setdefault(spec.key, spec)
    return list(found.values())


def _conv_op(cin: int, cout: int, k: int, in_hw: int, out_hw: int, groups: int = 1) -> OpCost:
    weights = cout * (cin // groups) * k * k
    kind = "depthwise_conv" if groups > 1 and groups == cin else "conv"
    return OpCost(kind, weights * out_hw * out_hw, weights + cout, cin * in_hw * in_hw + cout * out_hw * out_hw)
    # (+ cout: the bias that folding BatchNorm creates)


def _pointwise(elements: int, operands: int = 1, kind: str = "elementwise") -> OpCost:
    """An element-wise op reading ``operands`` tensors of ``elements`` and writing one."""
    return OpCost(kind, 0, 0, elements * (operands + 1))


def _conv_act(cin: int, cout: int, k: int, in_hw: int, out_hw: int, act: str | None, groups: int = 1) -> list[OpCost]:
    ops = [_conv_op(cin, cout, k, in_hw, out_hw, groups)]
    if act is not None:  # Relu and HardSwish stay separate nodes in the exported graph
        ops.append(_pointwise(cout * out_hw * out_hw))
    return ops


def block_ops(spec: BlockSpec) -> list[OpCost]:
    """The ops of the block's exported ONNX graph (BatchNorm folded into the convs), computed from its
    shape alone, for the roofline and calibrated models. MACs and weights equal the exported graph's;
    activation traffic matches it within a few percent (tests/test_ofa_blocks.py).

    Example:
        >>> [op.kind for op in block_ops(BlockSpec("Conv_1", 2, 80, 2, 256, kernel=1, act="h_swish"))]
        ['conv', 'elementwise']
    """
    ops: list[OpCost] = []
    if spec.kind in ("Conv", "Conv_1", "Conv_2"):
        ops += _conv_act(spec.in_ch, spec.out_ch, spec.kernel or 1, spec.in_hw, spec.out_hw, spec.act)
    elif spec.kind == "AvgPool2D":
        ops.append(OpCost("reduce", 0, 0, spec.in_ch * spec.in_hw ** 2 + spec.in_ch))
    elif spec.kind == "Logits":
        ops += [OpCost("view", 0, 0, 2 * spec.in_ch),
                OpCost("matmul", spec.in_ch * spec.out_ch, spec.in_ch * spec.out_ch + spec.out_ch, spec.in_ch + spec.out_ch)]
    else:
        assert spec.kind == "expanded_conv", spec.kind
        if spec.expand:
            ops += _conv_act(spec.in_ch, spec.mid, 1, spec.in_hw, spec.in_hw, spec.act)
        ops += _conv_act(spec.mid, spec.mid, spec.kernel, spec.in_hw, spec.out_hw, spec.act, groups=spec.mid)
        mid_elems = spec.mid * spec.out_hw ** 2
        if spec.se_hidden:
            ops.append(OpCost("reduce", 0, 0, mid_elems + spec.mid))
            ops += _conv_act(spec.mid, spec.se_hidden, 1, 1, 1, "relu")
            ops += _conv_act(spec.se_hidden, spec.mid, 1, 1, 1, "hard_sigmoid")
            ops.append(OpCost("elementwise", 0, 0, 2 * mid_elems + spec.mid))
        ops += _conv_act(spec.mid, spec.out_ch, 1, spec.out_hw, spec.out_hw, None)
        if spec.stride == 1 and spec.in_ch == spec.out_ch:
            ops.append(_pointwise(spec.out_ch * spec.out_hw ** 2, operands=2))
    return ops
