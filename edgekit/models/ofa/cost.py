"""Analytic cost of a subnet: multiply-accumulates (Conv and Gemm) and parameter count (no torch needed).

Counts match the materialized network: MACs equal those of the Conv/Gemm nodes of its ONNX export
(tests/test_ofa_materialize.py checks this), parameters equal ``sum(p.numel() for p in subnet.parameters())``.

Example:
    >>> from edgekit.models.ofa import get_space, largest
    >>> space = get_space("ofa-mbv3-w1.0")
    >>> round(count_macs(largest(space), space) / 1e6), round(count_params(largest(space), space) / 1e6, 2)
    (566, 7.66)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .config import SubnetConfig
from .skeleton import OFASkeleton

__all__ = ["LayerCost", "count_macs", "count_params", "layer_costs", "model_size_bytes"]


@dataclass(frozen=True)
class LayerCost:
    """One Conv or Gemm of a subnet: its name, MACs per image and parameters (BN affine included)."""

    name: str
    macs: int
    params: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _conv(name: str, cin: int, cout: int, k: int, hw: int, groups: int = 1, bias: bool = False, bn: bool = True):
    weights = cout * (cin // groups) * k * k
    return LayerCost(name, weights * hw * hw, weights + (cout if bias else 0) + (2 * cout if bn else 0))


def layer_costs(config: SubnetConfig, space: OFASkeleton) -> Iterator[LayerCost]:
    """Every Conv/Gemm of the materialized subnet, in execution order.

    Example:
        >>> from edgekit.models.ofa import get_space, smallest
        >>> space = get_space("ofa-mbv3-shapes")
        >>> next(layer_costs(smallest(space), space))
        LayerCost(name='stem', macs=110592, params=464)
    """
    config.validate(space)
    hw = _ceil_div(config.r, space.stem_stride)
    yield _conv("stem", space.in_channels, space.stem_width, 3, hw)
    yield _conv("first_block.dw", space.stem_width, space.stem_width, 3, hw, groups=space.stem_width)
    yield _conv("first_block.project", space.stem_width, space.first_block_width, 1, hw)
    for j, b in enumerate(config.active_blocks(space)):
        stage = space.stage_of(b)
        cin, cout, mid = space.block_in_width(b), space.stage_widths[stage], space.mid_width(b, config.e[b])
        out_hw = _ceil_div(hw, space.block_stride(b))
        yield _conv(f"blocks.{j}.expand", cin, mid, 1, hw)
        yield _conv(f"blocks.{j}.dw", mid, mid, config.ks[b], out_hw, groups=mid)
        if space.stage_se[stage]:
            hidden = space.se_width(mid)
            yield _conv(f"blocks.{j}.se.reduce", mid, hidden, 1, 1, bias=True, bn=False)
            yield _conv(f"blocks.{j}.se.expand", hidden, mid, 1, 1, bias=True, bn=False)
        yield _conv(f"blocks.{j}.project", mid, cout, 1, out_hw)
        hw = out_hw
    yield _conv("final_expand", space.stage_widths[-1], space.final_expand_width, 1, hw)
    yield _conv("feature_mix", space.final_expand_width, space.feature_mix_width, 1, 1, bn=False)
    yield _conv("classifier", space.feature_mix_width, space.num_classes, 1, 1, bias=True, bn=False)


def count_macs(config: SubnetConfig, space: OFASkeleton) -> int:
    """Multiply-accumulates of one image through the subnet (Conv and Gemm; BN, activations, pooling not counted).

    Example:
        >>> from edgekit.models.ofa import get_space, smallest
        >>> space = get_space("ofa-mbv3-w1.0")
        >>> count_macs(smallest(space), space) < count_macs(smallest(space).replace(r=224), space)
        True
    """
    return sum(layer.macs for layer in layer_costs(config, space))


def count_params(config: SubnetConfig, space: OFASkeleton) -> int:
    """Trainable parameters of the materialized subnet (conv/linear weights and biases, BN scale and shift).

    Example:
        >>> from edgekit.models.ofa import get_space, smallest
        >>> space = get_space("ofa-mbv3-shapes")
        >>> count_params(smallest(space), space) == count_params(smallest(space).replace(r=64), space)
        True
    """
    return sum(layer.params for layer in layer_costs(config, space))


def model_size_bytes(config: SubnetConfig, space: OFASkeleton, bytes_per_param: int = 4) -> int:
    """Weight bytes of the subnet at ``bytes_per_param`` (4 fp32, 2 fp16, 1 int8); BN folding not applied.

    Example:
        >>> from edgekit.models.ofa import get_space, smallest
        >>> space = get_space("ofa-mbv3-shapes")
        >>> model_size_bytes(smallest(space), space, 2) * 2 == model_size_bytes(smallest(space), space, 4)
        True
    """
    if bytes_per_param not in (1, 2, 4):
        from edgekit.runtimes.errors import UsageError

        raise UsageError(f"bytes_per_param must be one of [1, 2, 4], got {bytes_per_param}")
    return count_params(config, space) * bytes_per_param
