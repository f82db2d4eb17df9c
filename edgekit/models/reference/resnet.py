"""ResNet-18 and ResNet-50 (He et al., 2016) in plain torch, laid out as torchvision's (v1.5: stride on the 3x3).

Example:
    >>> net = resnet18()
    >>> sum(p.numel() for p in net.parameters())
    11689512
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["resnet18", "resnet50"]


def _bn_conv(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class _Block(nn.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) residual block."""

    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        cout = width * 4 if bottleneck else width
        if bottleneck:
            layers = [*_bn_conv(cin, width, 1), nn.ReLU(), *_bn_conv(width, width, 3, stride), nn.ReLU(),
                      *_bn_conv(width, cout, 1)]
        else:
            layers = [*_bn_conv(cin, width, 3, stride), nn.ReLU(), *_bn_conv(width, cout, 3)]
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(*_bn_conv(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depths: tuple[int, ...], bottleneck: bool, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_bn_conv(3, 64, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage, depth in enumerate(depths):
            width = 64 * 2**stage
            for i in range(depth):
                layers.append(_Block(cin, width, 2 if i == 0 and stage > 0 else 1, bottleneck))
                cin = width * 4 if bottleneck else width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2); 11.69 M parameters at 1000 classes."""
    return ResNet((2, 2, 2, 2), False, num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5: bottleneck blocks (3, 4, 6, 3); 25.56 M parameters at 1000 classes."""
    return ResNet((3, 4, 6, 3), True, num_classes)
