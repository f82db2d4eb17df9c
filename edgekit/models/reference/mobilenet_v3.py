"""MobileNetV3-Large 1.0 (Howard et al., 2019) in plain torch, from the blocks of edgekit's MobileNetV3-Small.

Example:
    >>> round(sum(p.numel() for p in mobilenet_v3_large().parameters()) / 1e6, 2)
    5.48
"""

from __future__ import annotations

from edgekit.models.mobilenet import MobileNetV3

__all__ = ["mobilenet_v3_large"]

# (kernel, expanded channels, out channels, squeeze-excite, h-swish, stride), from the paper's Table 1.
_LARGE = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)


class MobileNetV3Large(MobileNetV3):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__(_LARGE, 960, 1280, num_classes)


def mobilenet_v3_large(num_classes: int = 1000) -> MobileNetV3Large:
    """MobileNetV3-Large width 1.0."""
    return MobileNetV3Large(num_classes)
