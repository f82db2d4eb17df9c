"""Adapters for Hugging Face ``T5ForConditionalGeneration`` and ``BartForConditionalGeneration``.

The model is loaded from a local ``save_pretrained`` directory (nothing downloads). The graph modules
below reuse the model's own submodules (projections, norms, feed-forward blocks, embeddings, the
relative position bias) and only restate the attention so that the cache is plain tensors: tracing
Hugging Face's cache objects freezes Python flags into the graph. Export checks the result against
the model's own ``forward``.

Example:
    >>> parts, tokenizer = hf_parts(Path("/path/to/t5"))   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekit.runtimes.errors import ExportError, ModelLoadError, UsageError, one_line, require

from .graphs import Seq2SeqParts, _flat, _pairs
from .layers import NEG

__all__ = ["hf_parts", "SUPPORTED_ARCHITECTURES", "read_hf_config", "TOKENIZER_FILES"]

SUPPORTED_ARCHITECTURES = {"T5ForConditionalGeneration": "t5", "BartForConditionalGeneration": "bart"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Generation options edgekit's runtime does not implement: exporting a model that sets them would
# silently generate differently, so export refuses.
_UNSUPPORTED = {
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
    "min_length": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}


def read_hf_config(directory: Path) -> dict[str, Any]:
    """The directory's config.json, after checking it is a supported architecture."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--model hf:{directory}: no such directory")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"hf:{directory}: no config.json (not a Hugging Face model directory)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{config_path}: invalid JSON ({exc})") from exc
    architectures = config.get("architectures") or [f"(model_type {config.get('model_type')!r})"]
    if architectures[0] not in SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(
            f"hf:{directory}: architecture {architectures[0]} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    return config


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    batch, time, _ = x.shape
    return x.view(batch, time, n_heads, -1).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(2, 3)) * scale + bias
    out = torch.matmul(torch.softmax(scores.float(), dim=-1), v)
    batch, heads, time, dim = out.shape
    return out.transpose(1, 2).reshape(batch, time, heads * dim)


def _neg(mask: torch.Tensor) -> torch.Tensor:
    """Padding mask [batch, len] (1 keep) -> additive bias [batch, 1, 1, len]."""
    return (1.0 - mask[:, None, None, :].to(torch.float32)) * NEG


def _causal(query_len: int, total_len: torch.Tensor) -> torch.Tensor:
    """[1, 1, query, total] bias for queries at the last ``query_len`` positions."""
    q_pos = torch.arange(query_len) + (total_len - query_len)
    blocked = torch.arange(total_len)[None, :] > q_pos[:, None]
    return (blocked.to(torch.float32) * NEG)[None, None]


# ----------------------------------------------------------------------------------------------- T5
class T5EncoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        enc = self.model.encoder
        n_heads = self.model.config.num_heads
        x = enc.embed_tokens(input_ids)
        length = input_ids.shape[1]
        bias = enc.block[0].layer[0].SelfAttention.compute_bias(length, length) + _neg(attention_mask)
        for block in enc.block:
            attn = block.layer[0].SelfAttention
            h = block.layer[0].layer_norm(x)
            out = _attend(_heads(attn.q(h), n_heads), _heads(attn.k(h), n_heads), _heads(attn.v(h), n_heads), bias, 1.0)
            x = x + attn.o(out)
            x = block.layer[-1](x)
        x = enc.final_layer_norm(x)
        cross = []
        for block in self.model.decoder.block:
            attn = block.layer[1].EncDecAttention
            cross += [_heads(attn.k(x), n_heads), _heads(attn.v(x), n_heads)]
        return tuple(cross)


class T5DecoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.layers = model.config.num_decoder_layers
        self.scale_output = bool(getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings))

    def forward(self, decoder_input_ids, encoder_attention_mask, *kv):
        dec = self.model.decoder
        n_heads = self.model.config.num_heads
        past, cross = _pairs(kv[: 2 * self.layers]), _pairs(kv[2 * self.layers :])
        length = decoder_input_ids.shape[1]
        past_len = past[0][0].shape[2]
        total = past_len + length
        self_bias = dec.block[0].layer[0].SelfAttention.compute_bias(length, total, past_seen_tokens=past_len)
        self_bias = self_bias + _causal(length, total)
        cross_bias = _neg(encoder_attention_mask)
        x = dec.embed_tokens(decoder_input_ids)
        presents = []
        for i, block in enumerate(dec.block):
            attn = block.layer[0].SelfAttention
            h = block.layer[0].layer_norm(x)
            k = torch.cat((past[i][0], _heads(attn.k(h), n_heads)), dim=2)
            v = torch.cat((past[i][1], _heads(attn.v(h), n_heads)), dim=2)
            presents.append((k, v))
            x = x + attn.o(_attend(_heads(attn.q(h), n_heads), k, v, self_bias, 1.0))
            cattn = block.layer[1].EncDecAttention
            h = block.layer[1].layer_norm(x)
            x = x + cattn.o(_attend(_heads(cattn.q(h), n_heads), cross[i][0], cross[i][1], cross_bias, 1.0))
            x = block.layer[-1](x)
        x = dec.final_layer_norm(x)
        if self.scale_output:
            x = x * (self.model.config.d_model**-0.5)
        return (self.model.lm_head(x), *_flat(presents))


# --------------------------------------------------------------------------------------------- BART
def _bart_attention(attn, x, k, v, bias):
    q = _heads(attn.q_proj(x), attn.num_heads)
    return attn.out_proj(_attend(q, k, v, bias, attn.scaling))


def _bart_kv(attn, x):
    return _heads(attn.k_proj(x), attn.num_heads), _heads(attn.v_proj(x), attn.num_heads)


def _bart_positions(embed_positions, start, length: int) -> torch.Tensor:
    return embed_positions.weight[torch.arange(length) + start + embed_positions.offset][None]


class BartEncoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        enc = self.model.model.encoder
        x = enc.embed_tokens(input_ids) + _bart_positions(enc.embed_positions, 0, input_ids.shape[1])
        x = enc.layernorm_embedding(x)
        bias = _neg(attention_mask)
        for layer in enc.layers:
            x = layer.self_attn_layer_norm(x + _bart_attention(layer.self_attn, x, *_bart_kv(layer.self_attn, x), bias))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        if getattr(enc, "layer_norm", None) is not None:
            x = enc.layer_norm(x)
        return _flat([_bart_kv(layer.encoder_attn, x) for layer in self.model.model.decoder.layers])


class BartDecoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.layers = model.config.decoder_layers

    def forward(self, decoder_input_ids, encoder_attention_mask, *kv):
        dec = self.model.model.decoder
        past, cross = _pairs(kv[: 2 * self.layers]), _pairs(kv[2 * self.layers :])
        length = decoder_input_ids.shape[1]
        past_len = past[0][0].shape[2]
        x = dec.embed_tokens(decoder_input_ids) + _bart_positions(dec.embed_positions, past_len, length)
        x = dec.layernorm_embedding(x)
        self_bias = _causal(length, past_len + length)
        cross_bias = _neg(encoder_attention_mask)
        presents = []
        for i, layer in enumerate(dec.layers):
            k, v = _bart_kv(layer.self_attn, x)
            k, v = torch.cat((past[i][0], k), dim=2), torch.cat((past[i][1], v), dim=2)
            presents.append((k, v))
            x = layer.self_attn_layer_norm(x + _bart_attention(layer.self_attn, x, k, v, self_bias))
            x = layer.encoder_attn_layer_norm(x + _bart_attention(layer.encoder_attn, x, cross[i][0], cross[i][1], cross_bias))
            x = layer.final_layer_norm(x + layer.fc2(layer.activation_fn(layer.fc1(x))))
        if getattr(dec, "layer_norm", None) is not None:
            x = dec.layer_norm(x)
        logits = self.model.lm_head(x) + self.model.final_logits_bias
        return (logits, *_flat(presents))


class _Reference(nn.Module):
    """The Hugging Face model's own teacher-forced forward, returning logits."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                          use_cache=False).logits


def _generation(model) -> dict[str, Any]:
    gen = model.generation_config
    for name, neutral in _UNSUPPORTED.items():
        value = getattr(gen, name, neutral)
        if value not in (neutral, None, [], 0, 1.0) or (neutral == 1.0 and value not in (None, 1.0)):
            raise ExportError(
                f"generation_config.{name}={value!r}: edgekit's generation runtime does not implement it; "
                "set it to its neutral value before exporting"
            )
    eos = gen.eos_token_id if gen.eos_token_id is not None else model.config.eos_token_id
    eos = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else model.config.decoder_start_token_id
    pad = gen.pad_token_id if gen.pad_token_id is not None else model.config.pad_token_id
    return {
        "decoder_start_token_id": int(start),
        "bos_token_id": gen.bos_token_id,
        "eos_token_id": eos,
        "pad_token_id": int(pad) if pad is not None else (eos[0] if eos else 0),
        "forced_bos_token_id": gen.forced_bos_token_id,
        "forced_eos_token_id": gen.forced_eos_token_id,
        "num_beams": int(gen.num_beams or 1),
        "length_penalty": float(gen.length_penalty if gen.length_penalty is not None else 1.0),
        "early_stopping": gen.early_stopping if gen.early_stopping is not None else False,
        "max_new_tokens": int(gen.max_new_tokens or max(1, (gen.max_length or 20) - 1)),
    }


def hf_parts(directory: Path) -> tuple[Seq2SeqParts, dict[str, Any]]:
    """Load a local T5/BART directory and return its graph parts and tokenizer files."""
    directory = Path(directory)
    config = read_hf_config(directory)
    family = SUPPORTED_ARCHITECTURES[config["architectures"][0]]
    transformers = require("transformers", "slm")
    transformers.utils.logging.disable_progress_bar()
    cls = transformers.T5ForConditionalGeneration if family == "t5" else transformers.BartForConditionalGeneration
    try:
        model = cls.from_pretrained(str(directory), local_files_only=True).eval()
    except Exception as exc:
        first = one_line(exc)
        raise ModelLoadError(f"hf:{directory}: transformers cannot load it: {first}") from exc
    c = model.config
    if family == "t5":
        encoder, decoder = T5EncoderGraph(model), T5DecoderGraph(model)
        layers, heads, head_dim = c.num_decoder_layers, c.num_heads, c.d_kv
        max_source = int(getattr(c, "n_positions", 512) or 512)
    else:
        encoder, decoder = BartEncoderGraph(model), BartDecoderGraph(model)
        layers, heads = c.decoder_layers, c.decoder_attention_heads
        head_dim = c.d_model // heads
        max_source = int(c.max_position_embeddings)
    tokenizer_files = [directory / name for name in TOKENIZER_FILES if (directory / name).is_file()]
    has_tokenizer = (directory / "tokenizer.json").is_file()
    parts = Seq2SeqParts(
        name=directory.name,
        encoder=encoder,
        decoder=decoder,
        reference=_Reference(model),
        layers=layers,
        heads=heads,
        head_dim=head_dim,
        d_model=c.d_model,
        vocab_size=c.vocab_size,
        generation=_generation(model),
        provenance={"model": f"hf:{directory}", "architecture": config["architectures"][0], "family": family},
        max_source_length=max_source,
    )
    tokenizer = {"kind": "hf" if has_tokenizer else "none", "source_files": tokenizer_files if has_tokenizer else []}
    return parts, tokenizer
