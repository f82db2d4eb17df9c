"""The efficient segmenter: a ResNet-like encoder and a small multi-scale head (torch).

After "Simple and Efficient Architectures for Semantic Segmentation": plain conv + BatchNorm + ReLU
basic blocks in four stages (stride 4, 8, 16, 32), the receptive field enlarged without dilated
convolutions by putting most blocks at stride 16 and 32; the head fuses the stride 8/16/32 features
FPN-style (1x1 laterals, upsample, sum, one 3x3 conv) and upsamples the logits bilinearly to the
input size. Nothing but standard layers, so torch-pruning's DependencyGraph can prune its channels.
``head="vwformer"`` swaps the head for the varying-window-attention decoder of vwformer.py.

Example:
    >>> import torch
    >>> net = build_segmenter(SEG_PRESETS["mobile"]).eval()
    >>> tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (1, 8, 64, 64)
    >>> analytic_macs(SEG_PRESETS["mobile"], 64) == count_macs(net, 64)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.runtimes.errors import UsageError

from .data import NUM_CLASSES
from .layers import conv_bn
from .vwformer import VWFormerHead, head_macs

__all__ = ["SegConfig", "SEG_PRESETS", "HEADS", "STRIDE", "build_segmenter", "analytic_macs", "count_macs",
           "check_size"]

HEADS = ("simple", "vwformer")
STRIDE = 32  # the encoder's total stride: inputs are multiples of it
HEAD_STRIDE = 8  # both heads return logits at stride 8


@dataclass(frozen=True)
class SegConfig:
    """Stage widths and depths (four stages at stride 4, 8, 16, 32), the head and its width.

    Example:
        >>> SegConfig((8, 16, 32, 64), (1, 1, 1), head_width=16)
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: SegConfig: widths and depths need 4 entries each (stages at stride 4, 8, 16, 32), got 4 and 3
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    head: str = "simple"
    head_width: int = 64
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if len(self.widths) != 4 or len(self.depths) != 4:
            raise UsageError(f"SegConfig: widths and depths need 4 entries each (stages at stride 4, 8, 16, 32), "
                             f"got {len(self.widths)} and {len(self.depths)}")
        if self.head not in HEADS:
            raise UsageError(f"SegConfig: head {self.head!r} is not one of {', '.join(HEADS)}")
        if min(self.widths + self.depths + (self.head_width, self.num_classes)) < 1:
            raise UsageError("SegConfig: widths, depths, head_width and num_classes must be >= 1")


SEG_PRESETS: dict[str, SegConfig] = {
    "mobile": SegConfig(widths=(16, 32, 64, 128), depths=(1, 1, 3, 2), head_width=48),
    "large": SegConfig(widths=(32, 64, 128, 256), depths=(2, 2, 6, 3), head_width=96),
}


class BasicBlock(nn.Module):
    """ResNet's basic block; a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1, relu=False))
        self.shortcut = conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class Encoder(nn.Module):
    """Stem (two stride-2 convs to stride 4) then four stages; returns the stride 8, 16, 32 features."""

    def __init__(self, config: SegConfig) -> None:
        super().__init__()
        w = config.widths
        self.stem = nn.Sequential(conv_bn(3, max(w[0] // 2, 8), 3, 2), conv_bn(max(w[0] // 2, 8), w[0], 3, 2))
        stages, cin = [], w[0]
        for i, (width, depth) in enumerate(zip(w, config.depths)):
            blocks = [BasicBlock(cin if b == 0 else width, width, 2 if (b == 0 and i > 0) else 1) for b in range(depth)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features[1:]


class SimpleHead(nn.Module):
    """FPN-like fuse of the stride 8/16/32 features: laterals, upsample to stride 8, sum, 3x3 conv, classify."""

    def __init__(self, widths: tuple[int, ...], width: int, num_classes: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(conv_bn(c, width, 1) for c in widths[1:])
        self.fuse = conv_bn(width, width, 3)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.laterals[0](features[0])
        for i, (lateral, feature) in enumerate(zip(self.laterals[1:], features[1:]), start=1):
            # constant scales, not the target's shape: the exported Resize then needs no Shape/Gather/Concat ops
            # (the same values: inputs are multiples of the stride, so out = in * scale exactly)
            x = x + F.interpolate(lateral(feature), scale_factor=float(2 ** i), mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(x))


class Segmenter(nn.Module):
    """(N, 3, H, W) images -> (N, num_classes, H, W) logits."""

    def __init__(self, config: SegConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        if config.head == "vwformer":
            self.head: nn.Module = VWFormerHead(config.widths, config.head_width, config.num_classes)
        else:
            self.head = SimpleHead(config.widths, config.head_width, config.num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            check_size(tuple(image.shape[-2:]))
        logits = self.head(self.encoder(image))
        return F.interpolate(logits, scale_factor=float(HEAD_STRIDE), mode="bilinear", align_corners=False)


def check_size(hw: tuple[int, ...]) -> None:
    """Raise UsageError unless height and width are positive multiples of the total stride.

    Example:
        >>> check_size((64, 48))
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: segmenter input 'image': height and width must be multiples of 32 (the encoder's total stride), got 64x48
    """
    if len(hw) != 2 or any(int(s) < STRIDE or int(s) % STRIDE for s in hw):
        raise UsageError(f"segmenter input 'image': height and width must be multiples of {STRIDE} "
                         f"(the encoder's total stride), got {'x'.join(str(int(s)) for s in hw)}")


def build_segmenter(config: SegConfig) -> nn.Module:
    """A randomly initialised segmenter for ``config``."""
    return Segmenter(config)


def _conv(cin: int, cout: int, k: int, hw: int) -> int:
    return cin * cout * k * k * hw * hw


def analytic_macs(config: SegConfig, size: int) -> int:
    """Multiply-accumulates of one ``size`` x ``size`` image: every convolution and the attention
    products (bilinear resizing, BatchNorm and additions not counted)."""
    check_size((size, size))
    w = config.widths
    stem = max(w[0] // 2, 8)
    macs = _conv(3, stem, 3, size // 2) + _conv(stem, w[0], 3, size // 4)
    cin, hw = w[0], size // 4
    for i, (width, depth) in enumerate(zip(w, config.depths)):
        hw = hw // 2 if i > 0 else hw
        for b in range(depth):
            c_in = cin if b == 0 else width
            macs += _conv(c_in, width, 3, hw) + _conv(width, width, 3, hw)
            if b == 0 and (i > 0 or c_in != width):
                macs += _conv(c_in, width, 1, hw)
        cin = width
    if config.head == "vwformer":
        return macs + head_macs(w, config.head_width, config.num_classes, size // 8)
    s8 = size // 8
    laterals = sum(_conv(c, config.head_width, 1, s8 >> i) for i, c in enumerate(w[1:]))
    return macs + laterals + _conv(config.head_width, config.head_width, 3, s8) + _conv(config.head_width, config.num_classes, 1, s8)


def count_macs(module: nn.Module, size: int) -> int:
    """MACs of convolutions, linear layers and ``matmul``-style products, counted by running ``module``
    once (forward hooks; the cross-check of :func:`analytic_macs`)."""
    total = 0

    def conv_hook(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += output.numel() * (layer.in_channels // layer.groups) * k
        else:
            total += output.numel() * layer.in_features

    handles = [m.register_forward_hook(conv_hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, 3, size, size))
            total += sum(getattr(m, "last_attention_macs", 0) for m in module.modules())
    finally:
        for h in handles:
            h.remove()
    return int(total)
