"""edgekit's own small language models: an encoder-decoder and a decoder-only baseline (RoPE, pre-norm).

The methods split the work the way the exported graphs do: ``encode`` + ``cross_kv`` run once per
input, ``decode`` runs once per generated token with a self-attention KV cache.

Example:
    >>> import torch
    >>> from edgekit.models.slm.config import SlmConfig
    >>> model = EncoderDecoderSLM(SlmConfig(d_model=32, n_heads=2, d_ff=64, encoder_layers=2, decoder_layers=1))
    >>> ids = torch.randint(4, 200, (2, 7)); mask = torch.ones_like(ids)
    >>> model(ids, mask, torch.ones(2, 3, dtype=torch.long)).shape
    torch.Size([2, 3, 260])
"""

from __future__ import annotations

import warnings

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.runtimes.errors import ModelLoadError, one_line

from .config import SlmConfig
from .layers import DecoderBlock, EncoderBlock, RMSNorm, mask_bias

__all__ = ["EncoderDecoderSLM", "DecoderOnlySLM", "build_model", "save_checkpoint", "load_checkpoint"]

KV = tuple[torch.Tensor, torch.Tensor]


def _init(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, std=0.02)


def _causal_bias(query_len: int, attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, 1, query, total] bias: causal over the last ``query_len`` positions and key padding."""
    total = attention_mask.shape[1]
    device = attention_mask.device
    q_pos = torch.arange(query_len, device=device) + (total - query_len)
    allowed = torch.arange(total, device=device)[None, :] <= q_pos[:, None]
    return mask_bias(allowed[None, None] & attention_mask.bool()[:, None, None, :])


class EncoderDecoderSLM(nn.Module):
    def __init__(self, config: SlmConfig) -> None:
        super().__init__()
        assert config.kind == "encoder-decoder"
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.encoder = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_ff, c.rope_base, c.norm_eps) for _ in range(c.encoder_layers)
        )
        self.encoder_norm = RMSNorm(c.d_model, c.norm_eps)
        self.decoder = nn.ModuleList(
            DecoderBlock(c.d_model, c.n_heads, c.d_ff, c.rope_base, c.norm_eps) for _ in range(c.decoder_layers)
        )
        self.decoder_norm = RMSNorm(c.d_model, c.norm_eps)
        _init(self)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :].expand(input_ids.shape[0], -1)
        bias = mask_bias(attention_mask.bool()[:, None, None, :])
        for block in self.encoder:
            x, _ = block(x, bias, positions)
        return self.encoder_norm(x)

    def cross_kv(self, encoder_hidden: torch.Tensor) -> list[KV]:
        return [block.cross_attn.project_kv(encoder_hidden) for block in self.decoder]

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        cross: list[KV],
        past: list[KV] | None = None,
    ) -> tuple[torch.Tensor, list[KV]]:
        """Logits for ``decoder_input_ids`` following ``past`` (self-attention keys/values per layer)."""
        batch, length = decoder_input_ids.shape
        past_len = past[0][0].shape[2] if past is not None else 0
        device = decoder_input_ids.device
        positions = (torch.arange(length, device=device) + past_len)[None, :].expand(batch, -1)
        total_mask = torch.ones(batch, past_len + length, dtype=torch.long, device=device)
        self_bias = _causal_bias(length, total_mask)
        return self.decode_blocks(decoder_input_ids, positions, self_bias, encoder_attention_mask, cross, past)

    def decode_blocks(
        self,
        decoder_input_ids: torch.Tensor,
        positions: torch.Tensor,
        self_bias: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        cross: list[KV],
        past: list[KV] | None,
    ) -> tuple[torch.Tensor, list[KV]]:
        """The decoder blocks and LM head at given positions and self-attention bias (the dynamic KV cache of
        :meth:`decode` and the fixed-size cache of the static-shape graph share it)."""
        cross_bias = mask_bias(encoder_attention_mask.bool()[:, None, None, :])
        x = self.embed(decoder_input_ids)
        presents = []
        for i, block in enumerate(self.decoder):
            x, kv = block(x, self_bias, positions, cross[i], cross_bias, None if past is None else past[i])
            presents.append(kv)
        return F.linear(self.decoder_norm(x), self.embed.weight), presents

    def forward(self, input_ids, attention_mask, decoder_input_ids) -> torch.Tensor:
        """Teacher-forced logits (training and parity checks)."""
        cross = self.cross_kv(self.encode(input_ids, attention_mask))
        return self.decode(decoder_input_ids, attention_mask, cross)[0]


class DecoderOnlySLM(nn.Module):
    def __init__(self, config: SlmConfig) -> None:
        super().__init__()
        assert config.kind == "decoder-only"
        c = self.config = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_ff, c.rope_base, c.norm_eps) for _ in range(c.decoder_layers)
        )
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        _init(self)

    def step(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past: list[KV] | None = None,
    ) -> tuple[torch.Tensor, list[KV]]:
        """Logits for ``input_ids``; ``attention_mask`` covers past + new positions (0 = padding)."""
        bias = _causal_bias(input_ids.shape[1], attention_mask)
        x = self.embed(input_ids)
        presents = []
        for i, block in enumerate(self.layers):
            x, kv = block(x, bias, position_ids, None if past is None else past[i])
            presents.append(kv)
        return F.linear(self.norm(x), self.embed.weight), presents

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.step(input_ids, attention_mask, position_ids)[0]


def build_model(config: SlmConfig) -> nn.Module:
    """A randomly initialised model of ``config.kind``.

    Example:
        >>> from edgekit.models.slm.config import SlmConfig
        >>> type(build_model(SlmConfig(kind="decoder-only", encoder_layers=0, d_model=32, n_heads=2))).__name__
        'DecoderOnlySLM'
    """
    return (EncoderDecoderSLM if config.kind == "encoder-decoder" else DecoderOnlySLM)(config)


def save_checkpoint(model: nn.Module, path: str | Path, **meta) -> None:
    """Save an fp16 state dict with its config (loadable with ``torch.load(weights_only=True)``)."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    payload = {"config": model.config.to_json(), "state_dict": state, "meta": dict(meta)}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> nn.Module:
    """Load a checkpoint written by :func:`save_checkpoint` as an fp32 eval-mode model."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a hostile file: the error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
        config = SlmConfig.from_json(payload["config"])
        model = build_model(config)
        model.load_state_dict({k: v.float() for k, v in payload["state_dict"].items()})
    except Exception as exc:
        raise ModelLoadError(f"{path}: not an edgekit SLM checkpoint ({type(exc).__name__}: {one_line(exc)})") from exc
    model.meta = dict(payload.get("meta", {}))
    return model.eval()
