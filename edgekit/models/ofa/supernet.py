"""The OFA MobileNetV3 supernet and :func:`materialize`, which extracts a plain static subnet.

The supernet's forward takes the subnet config as an argument: there is no "active subnet" state to set
or forget. :func:`materialize` copies the active weights into an :class:`OFASubnet`, an ordinary module
that computes exactly what the supernet computes for that config.

Example:
    >>> import random, torch
    >>> from edgekit.models.ofa import get_space, sample
    >>> space = get_space("ofa-mbv3-shapes")
    >>> net = OFASupernet(space).eval()
    >>> cfg = sample(space, random.Random(0))
    >>> x = torch.randn(1, 3, cfg.r, cfg.r)
    >>> sub = materialize(net, cfg)
    >>> bool((sub(x) - net(x, cfg)).abs().max() < 1e-6)
    True
"""

from __future__ import annotations

import gc

import torch
import torch.nn.functional as F
from torch import nn

from .config import SubnetConfig
from .layers import ConvBNAct, ElasticMBConv, MBConv
from .space import OFASpace

__all__ = ["OFASubnet", "OFASupernet", "materialize"]


def _head(space: OFASpace, last_width: int) -> dict[str, nn.Module]:
    bn = {"bn_momentum": space.bn_momentum, "bn_eps": space.bn_eps}
    return {
        "final_expand": ConvBNAct(last_width, space.final_expand_width, 1, act="h_swish", **bn),
        "feature_mix": ConvBNAct(space.final_expand_width, space.feature_mix_width, 1, act="h_swish", bn=False),
        "classifier": nn.Linear(space.feature_mix_width, space.num_classes),
    }


def _stem(space: OFASpace) -> dict[str, nn.Module]:
    bn = {"bn_momentum": space.bn_momentum, "bn_eps": space.bn_eps}
    return {
        "stem": ConvBNAct(space.in_channels, space.stem_width, 3, space.stem_stride, act="h_swish", **bn),
        "first_block": MBConv(
            space.stem_width, space.stem_width, space.first_block_width, 3, 1, "relu", expand=False, **bn
        ),
    }


class OFASupernet(nn.Module):
    """Elastic MobileNetV3: stem, a fixed first block, ``space.num_blocks`` elastic blocks, head.

    Example:
        >>> import torch
        >>> from edgekit.models.ofa import get_space, largest
        >>> space = get_space("ofa-mbv3-shapes")
        >>> OFASupernet(space).eval()(torch.randn(2, 3, 64, 64), largest(space)).shape
        torch.Size([2, 10])
    """

    def __init__(self, space: OFASpace) -> None:
        super().__init__()
        self.space = space
        for name, module in _stem(space).items():
            self.add_module(name, module)
        self.blocks = nn.ModuleList(
            ElasticMBConv(
                space.block_in_width(b),
                space.stage_widths[space.stage_of(b)],
                space.ks_choices,
                space.e_choices,
                stride=space.block_stride(b),
                act=space.stage_acts[space.stage_of(b)],
                use_se=space.stage_se[space.stage_of(b)],
                divisor=space.channel_divisor,
                se_reduction=space.se_reduction,
                bn_momentum=space.bn_momentum,
                bn_eps=space.bn_eps,
            )
            for b in range(space.num_blocks)
        )
        for name, module in _head(space, space.stage_widths[-1]).items():
            self.add_module(name, module)
        self.dropout = space.dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MobileNet-style init: He-normal convs, unit BN, small-normal classifier, identity transforms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, config: SubnetConfig) -> torch.Tensor:
        config.validate(self.space)
        x = self.first_block(self.stem(x))
        for b in config.active_blocks(self.space):
            x = self.blocks[b](x, config.ks[b], self.space.mid_width(b, config.e[b]))
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        x = self.feature_mix(x).flatten(1)
        return self.classifier(F.dropout(x, self.dropout, self.training))


class OFASubnet(nn.Module):
    """A static MobileNetV3 materialized from a supernet; it has no elastic state.

    ``space_name`` and ``config`` record where it came from (metadata only, read by exporters).
    """

    def __init__(self, space: OFASpace, config: SubnetConfig) -> None:
        super().__init__()
        self.space_name = space.name
        self.config = config
        for name, module in _stem(space).items():
            self.add_module(name, module)
        bn = {"bn_momentum": space.bn_momentum, "bn_eps": space.bn_eps}
        blocks = []
        for b in config.active_blocks(space):
            stage = space.stage_of(b)
            mid = space.mid_width(b, config.e[b])
            blocks.append(
                MBConv(
                    space.block_in_width(b),
                    mid,
                    space.stage_widths[stage],
                    config.ks[b],
                    space.block_stride(b),
                    space.stage_acts[stage],
                    se_hidden=space.se_width(mid) if space.stage_se[stage] else None,
                    **bn,
                )
            )
        self.blocks = nn.Sequential(*blocks)
        for name, module in _head(space, space.stage_widths[-1]).items():
            self.add_module(name, module)
        self.dropout = nn.Dropout(space.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.first_block(self.stem(x)))
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        x = self.feature_mix(x).flatten(1)
        return self.classifier(self.dropout(x))


def materialize(supernet: OFASupernet, config: SubnetConfig) -> OFASubnet:
    """A plain static subnet with copied weights, numerically equal to ``supernet(x, config)``.

    The result is in eval mode, on the supernet's device, and shares no storage with it.

    Example:
        >>> import torch
        >>> from edgekit.models.ofa import get_space, smallest
        >>> space = get_space("ofa-mbv3-shapes")
        >>> sub = materialize(OFASupernet(space), smallest(space))
        >>> len(sub.blocks), sub.training
        (10, False)
    """
    # A subnet is a few thousand fresh objects: that often triggers a full garbage collection over
    # torch's whole heap (about 90 ms here, 5x the extraction itself). Nothing here makes cycles, so
    # collection waits until the next allocation after we return.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _materialize(supernet, config)
    finally:
        if gc_was_enabled:
            gc.enable()


def _materialize(supernet: OFASupernet, config: SubnetConfig) -> OFASubnet:
    space = supernet.space
    config.validate(space)
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for prefix in ("stem", "first_block", "final_expand", "feature_mix", "classifier"):
            for key, tensor in getattr(supernet, prefix).state_dict().items():
                state[f"{prefix}.{key}"] = tensor.detach().clone()
        for j, b in enumerate(config.active_blocks(space)):
            block_state = supernet.blocks[b].active_state(config.ks[b], space.mid_width(b, config.e[b]))
            for key, tensor in block_state.items():
                state[f"blocks.{j}.{key}"] = tensor
    with torch.device("meta"):
        subnet = OFASubnet(space, config)
    _assign(subnet, state)
    return subnet.eval()


def _assign(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put ``state``'s tensors in place of the meta tensors of ``module`` (what load_state_dict(assign=True)
    does, without its per-module overhead); every parameter and buffer must be covered exactly once."""
    slots = {}
    for prefix, sub in module.named_modules():
        for kind in ("_parameters", "_buffers"):
            for name, value in getattr(sub, kind).items():
                if value is not None:
                    slots[f"{prefix}.{name}" if prefix else name] = (sub, kind, name, value)
    assert slots.keys() == state.keys(), sorted(set(slots) ^ set(state))[:5]
    for key, (sub, kind, name, old) in slots.items():
        tensor = state[key]
        assert tensor.shape == old.shape and tensor.dtype == old.dtype, (key, tensor.shape, old.shape)
        getattr(sub, kind)[name] = nn.Parameter(tensor, requires_grad=old.requires_grad) if kind == "_parameters" else tensor
