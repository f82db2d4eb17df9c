"""Seeded random weights for parity checks, so outputs depend on the input and every tensor matters.

Fresh BatchNorm statistics (mean 0, var 1) and identity kernel transforms hide slicing mistakes;
once-for-all's own default init even gives input-independent outputs. This perturbs all of them.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    >>> _ = randomize_weights(net, seed=0)
    >>> bool(net[1].running_var.min() >= 0.5)
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["randomize_weights"]


def randomize_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill convs, linears, BatchNorms (affine and running stats) and square identity-like matrices.

    Scales keep activations of order one through a deep MobileNet in eval mode. Returns ``module``.

    Example:
        >>> from torch import nn
        >>> lin = randomize_weights(nn.Linear(8, 2), seed=1)
        >>> tuple(lin.weight.shape)
        (2, 8)
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) * (high - low) + low)

    def normal(t: torch.Tensor, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) * std)

    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Conv2d):
                fan_in = sub.weight[0].numel()
                normal(sub.weight, math.sqrt(2.0 / fan_in))
                if sub.bias is not None:
                    uniform(sub.bias, -0.1, 0.1)
            elif isinstance(sub, nn.Linear):
                normal(sub.weight, 1.0 / math.sqrt(sub.in_features))
                if sub.bias is not None:
                    uniform(sub.bias, -0.1, 0.1)
            elif isinstance(sub, nn.BatchNorm2d):
                uniform(sub.weight, 0.4, 1.0)
                uniform(sub.bias, -0.2, 0.2)
                uniform(sub.running_mean, -0.2, 0.2)
                uniform(sub.running_var, 0.5, 1.5)
            for name, param in sub.named_parameters(recurse=False):
                square = param.dim() == 2 and param.shape[0] == param.shape[1]
                if square and ("matrix" in name or isinstance(sub, nn.ParameterDict)):
                    param.copy_(torch.eye(param.shape[0], dtype=param.dtype))
                    param.add_(torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param.dtype) * 0.1)
    return module

