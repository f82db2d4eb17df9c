"""The blocks of a subnet as standalone torch modules, for timing them (block lookup tables).

The pure specs (:class:`BlockSpec`, its once-for-all table key, :func:`block_ops`) live in the
torch-free :mod:`edgekit.models.ofa.specs` and are re-exported here.

Example:
    >>> from edgekit.models.ofa import get_space, smallest
    >>> space = get_space("ofa-mbv3-tiny")
    >>> module, shape = build_block(subnet_blocks(smallest(space), space)[0], space)
    >>> shape
    (1, 3, 24, 24)
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, MBConv
from .skeleton import OFASkeleton
from .specs import BlockSpec, block_ops, space_blocks, subnet_blocks

__all__ = ["BlockSpec", "subnet_blocks", "space_blocks", "build_block", "block_ops"]


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class _Logits(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def build_block(spec: BlockSpec, space: OFASkeleton) -> tuple[nn.Module, tuple[int, ...]]:
    """A randomly initialised standalone module for ``spec`` and its input shape (batch 1), in eval mode.

    Timing does not depend on weight values, so blocks are not taken from a trained supernet.
    """
    bn = {"bn_momentum": space.bn_momentum, "bn_eps": space.bn_eps}
    if spec.kind == "expanded_conv":
        module: nn.Module = MBConv(spec.in_ch, spec.mid, spec.out_ch, spec.kernel, spec.stride, spec.act,
                                   se_hidden=spec.se_hidden or None, expand=spec.expand, **bn)
    elif spec.kind in ("Conv", "Conv_1"):
        module = ConvBNAct(spec.in_ch, spec.out_ch, spec.kernel, spec.stride, act=spec.act, **bn)
    elif spec.kind == "Conv_2":
        module = ConvBNAct(spec.in_ch, spec.out_ch, 1, act="h_swish", bn=False)
    elif spec.kind == "AvgPool2D":
        module = _Pool()
    else:
        assert spec.kind == "Logits", spec.kind
        module = _Logits(spec.in_ch, spec.out_ch)
    return module.eval(), (1, spec.in_ch, spec.in_hw, spec.in_hw)
