"""A MobileNetV3-Small classifier (Howard et al., 2019), randomly initialised with a fixed seed.

It is the built-in model until a trained once-for-all subnet replaces it as the default; it is also a
realistic ~3 ms network for runtime benchmarks.

Example:
    >>> import torch
    >>> net = mobilenet_v3_small(num_classes=10).eval()
    >>> net(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV3", "mobilenet_v3_small", "INPUT_SHAPE"]

INPUT_SHAPE = (1, 3, 224, 224)

# (kernel, expanded channels, out channels, squeeze-excite, h-swish, stride), from the paper's Table 2.
_SMALL = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act=None) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _make_divisible(channels / 4)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hswish: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, act=act))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(_conv_bn_act(expanded, cout, 1))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV3(nn.Module):
    """MobileNetV3 from its block table: (kernel, expanded, out, squeeze-excite, h-swish, stride) per block,
    then a 1x1 conv to ``last`` channels and a two-layer head of ``head`` hidden units (Small and Large)."""

    def __init__(self, blocks, last: int, head: int, num_classes: int = 1000) -> None:
        super().__init__()
        layers = [_conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)]
        cin = 16
        for kernel, expanded, cout, se, hswish, stride in blocks:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, se, hswish, stride))
            cin = cout
        layers.append(_conv_bn_act(cin, last, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(last, head), nn.Hardswish(), nn.Linear(head, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class MobileNetV3Small(MobileNetV3):
    input_shape = INPUT_SHAPE

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(_SMALL, 576, 1024, num_classes)


def mobilenet_v3_small(num_classes: int = 1000, seed: int = 0) -> MobileNetV3Small:
    """A MobileNetV3-Small with deterministic random weights (no download, no training)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return MobileNetV3Small(num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
