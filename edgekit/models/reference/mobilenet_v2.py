"""MobileNetV2 1.0 (Sandler et al., 2018) in plain torch: inverted residuals with linear bottlenecks.

Example:
    >>> round(sum(p.numel() for p in mobilenet_v2().parameters()) / 1e6, 2)
    3.5
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mobilenet_v2"]

# (expansion, out channels, repeats, first stride), from the paper's Table 2.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6()] if relu else layers


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = _conv(cin, hidden, 1) if expansion != 1 else []
        layers += _conv(hidden, hidden, 3, stride, groups=hidden) + _conv(hidden, cout, 1, relu=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers, cin = _conv(3, 32, 3, 2), 32
        for expansion, cout, repeats, stride in _STAGES:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        layers += _conv(cin, 1280, 1)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 width 1.0."""
    return MobileNetV2(num_classes)
