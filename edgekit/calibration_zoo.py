"""A small, varied set of networks whose measured latencies calibrate the per-op latency model.

Like nn-Meter's kernel sampling, it spreads the op kinds a latency model has to weigh (dense conv,
depthwise conv, matmul, element-wise, reductions, data movement) over a range of sizes, so a fit on it
transfers to architectures it has not seen. Shapes are fixed per model (batch 1).

Example:
    >>> zoo = calibration_zoo()
    >>> len(zoo) >= 24, zoo[0].name
    (True, 'conv-c16-r32-d2')
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ZooModel", "calibration_zoo"]


@dataclass(frozen=True)
class ZooModel:
    name: str
    module: nn.Module
    input_shape: tuple[int, ...]


class _Attention(nn.Module):
    """Single-head self-attention with an MLP: MatMul, Softmax, LayerNorm, GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        x = x + self.out(weights @ v)
        return x + self.mlp(self.norm(x))


class _MultiHeadAttention(nn.Module):
    """Multi-head self-attention written out: head split/merge (Reshape, Transpose), batched MatMul."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        split = lambda y: y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        return x + self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


def _conv_stack(channels: int, depth: int, kernel: int = 3) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, channels, kernel, padding=kernel // 2), nn.BatchNorm2d(channels), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2), nn.BatchNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _separable_stack(channels: int, depth: int, kernel: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.Hardswish()]
    for _ in range(depth):
        layers += [
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels), nn.BatchNorm2d(channels), nn.Hardswish(),
            nn.Conv2d(channels, channels * 2, 1), nn.ReLU(), nn.Conv2d(channels * 2, channels, 1),
        ]
    return nn.Sequential(*layers)


def _mlp(dim: int, hidden: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)]
    return nn.Sequential(*layers)


class _Classifier(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, channels * 2, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(channels * 2, 100)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def _inverted_residuals(channels: int, expand: int, kernel: int, se: bool, depth: int) -> nn.Module:
    from edgekit.models.mobilenet import InvertedResidual

    layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.Hardswish()]
    layers += [InvertedResidual(channels, kernel, channels * expand, channels, se, True, 1) for _ in range(depth)]
    return nn.Sequential(*layers)


class _UpsampleNet(nn.Module):
    """Strided encoder, then bilinear upsampling with a concatenated skip: Resize, Concat."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down1 = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
        self.down2 = nn.Sequential(nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1), nn.ReLU())
        self.fuse = nn.Conv2d(channels * 3, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        b = nn.functional.interpolate(self.down2(a), size=a.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(torch.relu(self.fuse(torch.cat([a, b], dim=1))))


def calibration_zoo() -> list[ZooModel]:
    """The zoo, deterministic (seeded weights; timing does not depend on their values)."""
    torch.manual_seed(0)
    zoo: list[ZooModel] = []
    for channels, resolution, depth in ((16, 32, 2), (32, 32, 3), (32, 64, 2), (64, 32, 3), (64, 56, 2), (96, 28, 3)):
        zoo.append(ZooModel(f"conv-c{channels}-r{resolution}-d{depth}", _conv_stack(channels, depth), (1, 3, resolution, resolution)))
    for channels, resolution, kernel in ((32, 64, 3), (64, 64, 5), (96, 56, 3), (128, 48, 7), (48, 112, 5), (192, 28, 3)):
        zoo.append(ZooModel(f"separable-c{channels}-r{resolution}-k{kernel}", _separable_stack(channels, 3, kernel),
                            (1, 3, resolution, resolution)))
    for dim, hidden, tokens in ((64, 256, 16), (128, 512, 32), (256, 1024, 16), (512, 1024, 8), (128, 256, 128), (256, 512, 64)):
        zoo.append(ZooModel(f"mlp-d{dim}-h{hidden}-t{tokens}", _mlp(dim, hidden, 2), (1, tokens, dim)))
    for dim, tokens in ((64, 64), (128, 32), (128, 128), (256, 64)):
        zoo.append(ZooModel(f"attention-d{dim}-t{tokens}", _Attention(dim, dim * 2), (1, tokens, dim)))
    for dim, heads, tokens in ((64, 2, 64), (128, 4, 96), (192, 6, 48), (256, 8, 32)):
        zoo.append(ZooModel(f"mha-d{dim}-h{heads}-t{tokens}", _MultiHeadAttention(dim, heads), (1, tokens, dim)))
    for channels, resolution in ((16, 64), (32, 96), (64, 64)):
        zoo.append(ZooModel(f"classifier-c{channels}-r{resolution}", _Classifier(channels), (1, 3, resolution, resolution)))
    for channels, expand, kernel, se, resolution in ((16, 4, 3, True, 96), (24, 6, 5, True, 64), (40, 3, 7, False, 56),
                                                     (32, 4, 5, True, 112), (64, 6, 3, True, 32), (48, 3, 3, False, 96)):
        name = f"mbconv-c{channels}-e{expand}-k{kernel}-se{int(se)}-r{resolution}"
        zoo.append(ZooModel(name, _inverted_residuals(channels, expand, kernel, se, 3), (1, 3, resolution, resolution)))
    for channels, resolution in ((16, 96), (32, 64), (24, 128)):
        zoo.append(ZooModel(f"upsample-c{channels}-r{resolution}", _UpsampleNet(channels), (1, 3, resolution, resolution)))
    return [ZooModel(m.name, m.module.eval(), m.input_shape) for m in zoo]
