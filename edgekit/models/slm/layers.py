"""Pre-norm transformer blocks with rotary position embeddings, shared by both SLM kinds.

Attention takes its keys/values explicitly, so one block serves training (whole sequence), the
first decoding step and the later steps with a KV cache, and export traces the same code.

Example:
    >>> import torch
    >>> attn = Attention(32, 4, rope_base=10000.0)
    >>> x = torch.randn(2, 5, 32); pos = torch.arange(5).expand(2, 5)
    >>> k, v = attn.project_kv(x, pos)
    >>> attn(x, k, v, None, pos).shape
    torch.Size([2, 5, 32])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RMSNorm", "Attention", "SwiGLU", "EncoderBlock", "DecoderBlock", "rope", "mask_bias", "NEG"]

NEG = torch.finfo(torch.float32).min  # additive mask value (as Hugging Face models use)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate ``x`` [batch, heads, time, head_dim] by ``positions`` [batch, time] (rotate-half form)."""
    half = x.shape[-1] // 2
    inv_freq = torch.exp(torch.arange(half, dtype=torch.float32, device=x.device) * (-math.log(base) / half))
    angles = positions.to(torch.float32)[:, None, :, None] * inv_freq  # [batch, 1, time, half]
    cos, sin = torch.cos(angles), torch.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def mask_bias(allowed: torch.Tensor) -> torch.Tensor:
    """Additive attention bias from a boolean "may attend" tensor."""
    zero = torch.zeros((), dtype=torch.float32, device=allowed.device)
    return torch.where(allowed, zero, torch.full((), NEG, dtype=torch.float32, device=allowed.device))


class Attention(nn.Module):
    """Multi-head attention; ``rope_base`` None means no rotary embedding (cross-attention)."""

    def __init__(self, d_model: int, n_heads: int, rope_base: float | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.rope_base = rope_base
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, _ = x.shape
        return x.view(batch, time, self.n_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated when RoPE is on) and values of ``x``, each [batch, heads, time, head_dim]."""
        k = self._heads(self.k(x))
        if self.rope_base is not None:
            k = rope(k, positions, self.rope_base)
        return k, self._heads(self.v(x))

    def forward(
        self,
        x: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self._heads(self.q(x))
        if self.rope_base is not None:
            q = rope(q, positions, self.rope_base)
        scores = torch.matmul(q, k.transpose(2, 3)) * (self.head_dim**-0.5)
        if bias is not None:
            scores = scores + bias
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        batch, _, time, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(batch, time, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class EncoderBlock(nn.Module):
    """Self-attention (bidirectional, or causal through ``bias``) and MLP; also the decoder-only block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, rope_base: float, eps: float) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps)
        self.attn = Attention(d_model, n_heads, rope_base)
        self.norm2 = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)

    def forward(self, x, bias, positions, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Returns the new hidden states and the (past + new) keys/values."""
        h = self.norm1(x)
        k, v = self.attn.project_kv(h, positions)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        x = x + self.attn(h, k, v, bias, positions)
        return x + self.mlp(self.norm2(x)), (k, v)


class DecoderBlock(nn.Module):
    """Causal self-attention (RoPE, KV cache), cross-attention over the encoder output, MLP."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, rope_base: float, eps: float) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps)
        self.self_attn = Attention(d_model, n_heads, rope_base)
        self.norm2 = RMSNorm(d_model, eps)
        self.cross_attn = Attention(d_model, n_heads, None)
        self.norm3 = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)

    def forward(self, x, self_bias, positions, cross_kv, cross_bias, past=None):
        h = self.norm1(x)
        k, v = self.self_attn.project_kv(h, positions)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        x = x + self.self_attn(h, k, v, self_bias, positions)
        x = x + self.cross_attn(self.norm2(x), cross_kv[0], cross_kv[1], cross_bias)
        return x + self.mlp(self.norm3(x)), (k, v)
