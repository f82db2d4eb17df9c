"""MobileNetV1 1.0 (Howard et al., 2017) in plain torch: a 3x3 conv then 13 depthwise-separable blocks.

Example:
    >>> round(sum(p.numel() for p in mobilenet_v1().parameters()) / 1e6, 2)
    4.23
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mobilenet_v1"]

# (out channels, stride) of the 13 depthwise-separable blocks, from the paper's Table 1.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
           (512, 1), (1024, 2), (1024, 1))


def _conv(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers, cin = _conv(3, 32, 3, 2), 32
        for cout, stride in _BLOCKS:
            layers += _conv(cin, cin, 3, stride, groups=cin) + _conv(cin, cout, 1, 1)
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def mobilenet_v1(num_classes: int = 1000) -> MobileNetV1:
    """MobileNetV1 width 1.0."""
    return MobileNetV1(num_classes)
