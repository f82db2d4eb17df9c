"""VWFormer's decoder head: varying-window attention (VWA) over fused multi-scale features (torch).

Local-window attention (LWA) splits the stride-8 map into P x P query windows that attend to
themselves. VWA keeps the P x P query window but gives it a context window R*P x R*P centred on it;
the paper's re-scaling shrinks that context back to P x P tokens (a stride-R patch embedding: a
pixel-unshuffle of R x R cells followed by a projection, i.e. one R x R convolution of stride R over
the zero-padded map) before the keys and values are formed. So every query window attends to P*P
tokens whatever R is, and the attention costs exactly what LWA's does (:func:`attention_macs`).
The windows are cut with R*R static slices and reshapes: it exports to ONNX with static shapes.

Example:
    >>> attention_macs(48, 8, 4, 4) == attention_macs(48, 8, 4, 1)  # VWA (R=4) vs LWA
    True
    >>> attention_macs(48, 8, 4, 4, rescale=False) == 16 * attention_macs(48, 8, 4, 1)  # without re-scaling
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import conv_bn

__all__ = ["VaryingWindowAttention", "VWFormerHead", "attention_macs", "vwa_macs", "head_macs", "WINDOW", "RATIOS"]

WINDOW = 4  # P: query windows of 4 x 4 stride-8 cells
RATIOS = (2, 4)  # context windows of 2P and 4P, besides the short path


def attention_macs(channels: int, hw: int, window: int, ratio: int, *, rescale: bool = True) -> int:
    """MACs of the two attention products (Q K^T and A V) over an ``hw`` x ``hw`` map: one query
    window of ``window``^2 tokens attends to ``window``^2 context tokens after re-scaling (``ratio``^2
    times as many without it)."""
    windows = (hw // window) ** 2
    context = (window * (1 if rescale else ratio)) ** 2
    return 2 * windows * window * window * context * channels


def _reduced(hw: int, window: int, ratio: int) -> int:
    """Side of the context map after padding by (R-1)P/2 and the stride-R re-scaling."""
    return (hw + (ratio - 1) * window) // ratio


def vwa_macs(channels: int, hw: int, window: int, ratio: int) -> dict[str, int]:
    """MACs of one VWA block by part: projections, the re-scaling convolution, attention."""
    side = _reduced(hw, window, ratio)
    rescale = channels * channels * ratio * ratio * side * side if ratio > 1 else 0
    projections = 2 * channels * channels * hw * hw + 2 * channels * channels * side * side  # q, out; k and v
    return {"projections": projections, "rescale": rescale, "attention": attention_macs(channels, hw, window, ratio)}


def head_macs(widths: tuple[int, ...], width: int, num_classes: int, s8: int,
              window: int = WINDOW, ratios: tuple[int, ...] = RATIOS) -> int:
    """MACs of :class:`VWFormerHead` on a stride-8 map of side ``s8``."""
    laterals = sum(c * width * (s8 >> i) ** 2 for i, c in enumerate(widths[1:]))
    fuse = 3 * width * width * s8 * s8
    attention = sum(sum(vwa_macs(width, s8, window, r).values()) for r in ratios)
    out = (1 + len(ratios)) * width * width * s8 * s8 + width * num_classes * s8 * s8
    return laterals + fuse + attention + out


class VaryingWindowAttention(nn.Module):
    """Multi-head attention of P x P query windows over re-scaled R*P x R*P context windows (R=1: LWA)."""

    def __init__(self, channels: int, window: int = WINDOW, ratio: int = 2, heads: int = 2) -> None:
        super().__init__()
        assert window % ratio == 0 or ratio == 1, "the re-scaled context windows must tile the map"
        self.window, self.ratio = window, ratio
        self.heads = heads if channels % heads == 0 else 1
        self.query = nn.Conv2d(channels, channels, 1)
        self.rescale = nn.Conv2d(channels, channels, ratio, ratio) if ratio > 1 else nn.Identity()
        self.key_value = nn.Conv2d(channels, 2 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.last_attention_macs = 0

    def _context(self, x: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
        """(N, 2C, nh, nw, P*P): the keys and values of each query window's re-scaled context window."""
        p, r = self.window, self.ratio
        pad = (r - 1) * p // 2
        kv = self.key_value(self.rescale(F.pad(x, (pad, pad, pad, pad))))  # (N, 2C, nh*s + (R-1)*s, ...)
        n, c2 = kv.shape[0], kv.shape[1]
        s = p // r  # cells of s x s: window (i, j)'s context is cells i..i+R-1, j..j+R-1
        cells = kv.reshape(n, c2, nh + r - 1, s, nw + r - 1, s)
        rows = torch.stack([torch.stack([cells[:, :, a:a + nh, :, b:b + nw, :] for b in range(r)], 2)
                            for a in range(r)], 2)  # (N, 2C, R(a), R(b), nh, s, nw, s)
        rows = rows.permute(0, 1, 4, 6, 2, 5, 3, 7)  # (N, 2C, nh, nw, a, sy, b, sx)
        return rows.reshape(n, c2, nh, nw, p * p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, heads = self.window, self.heads
        nh, nw = h // p, w // p
        d = c // heads
        q = self.query(x).reshape(n, heads, d, nh, p, nw, p).permute(0, 3, 5, 1, 4, 6, 2)
        q = q.reshape(n, nh, nw, heads, p * p, d)
        kv = self._context(x, nh, nw).reshape(n, 2, heads, d, nh, nw, p * p).permute(1, 0, 4, 5, 2, 6, 3)
        k, v = kv[0], kv[1]  # (N, nh, nw, heads, P*P, d)
        attn = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)
        y = (attn @ v).reshape(n, nh, nw, heads, p, p, d).permute(0, 3, 6, 1, 4, 2, 5).reshape(n, c, h, w)
        self.last_attention_macs = attention_macs(c, h, p, self.ratio) if h == w else 2 * nh * nw * p ** 4 * c
        return self.out(y)


class VWFormerHead(nn.Module):
    """Fuse the stride 8/16/32 features (laterals, upsample, concat, 1x1), then a short path and one VWA
    branch per context ratio, concatenated, projected and classified at stride 8."""

    def __init__(self, widths: tuple[int, ...], width: int, num_classes: int,
                 window: int = WINDOW, ratios: tuple[int, ...] = RATIOS) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(conv_bn(c, width, 1) for c in widths[1:])
        self.fuse = conv_bn(3 * width, width, 1)
        self.branches = nn.ModuleList(VaryingWindowAttention(width, window, r) for r in ratios)
        self.project = conv_bn((1 + len(ratios)) * width, width, 1)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        scaled = [F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if i else lat(f)
                  for i, (lat, f) in enumerate(zip(self.laterals, features))]
        x = self.fuse(torch.cat(scaled, 1))
        x = self.project(torch.cat([x] + [branch(x) for branch in self.branches], 1))
        return self.classifier(x)
