"""The one building block the segmenter's encoder and both heads share: conv + BatchNorm (+ ReLU).

Example:
    >>> [type(layer).__name__ for layer in conv_bn(3, 8, 3, 2)]
    ['Conv2d', 'BatchNorm2d', 'ReLU']
"""

from __future__ import annotations

from torch import nn

__all__ = ["conv_bn"]


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """A bias-free ``kernel`` x ``kernel`` convolution (same padding), BatchNorm, and ReLU unless ``relu`` is False."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)
