"""Static-shape graphs of an encoder-decoder SLM, for formats that fix every axis but the batch (TFLite).

The dynamic graphs (:mod:`.graphs`) grow the KV cache by concatenation, so its length changes every step;
a static-shape file cannot take that. Here the source is padded to ``source_length`` tokens with its
attention mask, and the decoder takes one token per call with a fixed-size cache of ``cache_length``
positions and the index it writes at:

  encoder: input_ids, attention_mask [batch, S] -> cross_key_i, cross_value_i [batch, heads, S, head_dim]
  decoder: decoder_input_ids [batch, 1], cache_position [batch, 1], encoder_attention_mask [batch, S],
           past_key_i, past_value_i [batch, heads, T, head_dim], cross_key_i, cross_value_i
           -> logits [batch, 1, vocab], new_key_i, new_value_i [batch, heads, 1, head_dim]

Cache slots at or after ``cache_position`` are masked out, the new token attends to itself, and the
runtime writes ``new_key_i`` / ``new_value_i`` into slot ``cache_position`` (no copy of the cache comes
out of the graph). Only edgekit's own SLMs have this form: a Hugging Face T5's relative position buckets
or BART's learned positions would need their own.

Example:
    >>> from edgekit.models.slm.config import SlmConfig
    >>> from edgekit.models.slm.graphs import slm_parts
    >>> from edgekit.models.slm.model import build_model
    >>> parts = slm_parts(build_model(SlmConfig(d_model=32, n_heads=2, d_ff=64, encoder_layers=1, decoder_layers=1)), "tiny")
    >>> [s.shape for s in static_specs(parts, 16, 8).decoder_inputs][:4]
    [('batch', 1), ('batch', 1), ('batch', 16), ('batch', 2, 8, 16)]
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

from ..source import HostTiming, ModelSource
from .graphs import CausalParts, GraphSpecs, Seq2SeqParts, SlmDecoderGraph, _flat, _kv_names, _pairs, chain_error
from .layers import mask_bias

__all__ = ["StaticDecoderGraph", "static_specs", "static_source", "SOURCE_LENGTH", "CACHE_LENGTH"]

# Defaults: the shipped letters task's inputs are at most 111 tokens; 128 decoder positions cover the
# generation default (64 new tokens) with room. Both are capped by the model's own max_length.
SOURCE_LENGTH, CACHE_LENGTH = 128, 128
TIMED_POSITION, TIMED_SOURCE = 15, 16  # the timed step: token 16 of a 16-token source (as the dynamic graphs)


def static_specs(parts: Seq2SeqParts, source_length: int, cache_length: int) -> GraphSpecs:
    """Specs of the static encoder and decoder graphs (every axis fixed but ``batch``)."""
    kv = lambda name, length: TensorSpec(name, ("batch", parts.heads, length, parts.head_dim), "float32")  # noqa: E731
    cross = [kv(n, source_length) for n in _kv_names("cross", parts.layers)]
    return GraphSpecs(
        encoder_inputs=(TensorSpec("input_ids", ("batch", source_length), "int64"),
                        TensorSpec("attention_mask", ("batch", source_length), "int64")),
        encoder_outputs=tuple(s.name for s in cross),
        decoder_inputs=(TensorSpec("decoder_input_ids", ("batch", 1), "int64"),
                        TensorSpec("cache_position", ("batch", 1), "int64"),
                        TensorSpec("encoder_attention_mask", ("batch", source_length), "int64"),
                        *(kv(n, cache_length) for n in _kv_names("past", parts.layers)), *cross),
        decoder_outputs=("logits", *_kv_names("new", parts.layers)),
        output_axes={},
    )


class StaticDecoderGraph(nn.Module):
    """One decoder step over a fixed-size cache (see the module docstring)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.layers = model.config.decoder_layers

    def forward(self, decoder_input_ids, cache_position, encoder_attention_mask, *kv):
        past, cross = _pairs(kv[: 2 * self.layers]), _pairs(kv[2 * self.layers :])
        batch, slots = decoder_input_ids.shape[0], past[0][0].shape[2]
        filled = torch.arange(slots, device=cache_position.device)[None, :] < cache_position  # [batch, T]
        allowed = torch.cat((filled, torch.ones(batch, 1, dtype=torch.bool, device=filled.device)), dim=1)
        logits, presents = self.model.decode_blocks(decoder_input_ids, cache_position, mask_bias(allowed[:, None, None, :]),
                                                    encoder_attention_mask, cross, past)
        return (logits, *_flat((k[:, :, -1:], v[:, :, -1:]) for k, v in presents))


def _lengths(parts: Seq2SeqParts) -> tuple[int, int]:
    return min(SOURCE_LENGTH, parts.max_source_length), min(CACHE_LENGTH, parts.max_source_length)


def _source_feeds(rng: np.random.Generator, parts: Seq2SeqParts, batch: int, length: int, used: int) -> dict:
    ids = rng.integers(0, parts.vocab_size, (batch, length)).astype(np.int64)
    mask = np.zeros((batch, length), np.int64)
    for row in range(batch):
        mask[row, : max(1, used - 3 * row)] = 1  # right padding, later rows shorter
    return {"input_ids": ids * mask, "attention_mask": mask}


def _decoder_feeds(rng: np.random.Generator, parts: Seq2SeqParts, specs: GraphSpecs, batch: int, position: int,
                   mask: np.ndarray) -> dict:
    feed: dict[str, np.ndarray] = {
        "decoder_input_ids": rng.integers(0, parts.vocab_size, (batch, 1)).astype(np.int64),
        "cache_position": np.full((batch, 1), position, np.int64),
        "encoder_attention_mask": mask,
    }
    for spec in specs.decoder_inputs[3:]:
        feed[spec.name] = rng.standard_normal((batch, *spec.shape[1:])).astype(np.float32)
    return feed


def _check_static_chain(parts: Seq2SeqParts, open_graph, atol: float, rtol: float) -> dict[str, Any]:
    """Encoder once on a padded source, then the decoder token by token writing its cache slots, against the
    source model's teacher-forced forward on the unpadded source (at 10x the per-graph ``atol``)."""
    encoder, decoder = open_graph("encoder"), open_graph("decoder")
    rng = np.random.default_rng(1)
    source_length, cache_length = encoder.inputs[0].shape[1], decoder.inputs[3].shape[2]
    enc = _source_feeds(rng, parts, 2, source_length, 9)
    targets = rng.integers(0, parts.vocab_size, (2, 4)).astype(np.int64)
    cross = encoder.run(enc)
    past_names = [s.name for s in decoder.inputs if s.name.startswith("past_")]
    cache = {name: np.zeros((2, *decoder.inputs[3].shape[1:]), np.float32) for name in past_names}
    logits = []
    for position in range(targets.shape[1]):
        out = decoder.run({"decoder_input_ids": targets[:, position : position + 1],
                           "cache_position": np.full((2, 1), position, np.int64),
                           "encoder_attention_mask": enc["attention_mask"], **cache, **cross})
        for name in past_names:
            cache[name][:, :, position] = out[name.replace("past_", "new_", 1)][:, :, 0]
        logits.append(out["logits"])
    used = 9  # the unpadded columns (the first row's length)
    with torch.no_grad():
        ref = parts.reference(torch.from_numpy(enc["input_ids"][:, :used]), torch.from_numpy(enc["attention_mask"][:, :used]),
                              torch.from_numpy(targets))
    worst = chain_error(np.concatenate(logits, axis=1), ref.float().numpy(), atol * 10, rtol, f"{parts.name} (static shapes)")
    return {"max_abs_error": worst, "atol": atol * 10, "rtol": rtol, "passed": True,
            "static": {"source_length": int(source_length), "cache_length": int(cache_length)}}


def _tensors(feed: Mapping[str, np.ndarray], specs) -> tuple:
    return tuple(torch.from_numpy(feed[s.name]) for s in specs)


def static_source(parts: Seq2SeqParts | CausalParts, dynamic: ModelSource) -> ModelSource:
    """``dynamic`` (the family's source) with static-shape graphs, chained check and timed step instead.

    UsageError for a model that has no static form (a decoder-only SLM, a Hugging Face T5/BART).
    """
    if not isinstance(parts, Seq2SeqParts) or not isinstance(parts.decoder, SlmDecoderGraph):
        what = "a decoder-only SLM" if isinstance(parts, CausalParts) else "a Hugging Face model (hf:DIR)"
        raise UsageError(f"--model {dynamic.name}: static-shape formats (tflite) take edgekit's encoder-decoder SLMs "
                         f"(fixed-size KV cache); {what} exports to onnx (--format onnx)")
    source_length, cache_length = _lengths(parts)
    specs = static_specs(parts, source_length, cache_length)
    rng = np.random.default_rng(0)
    enc_feeds = [_source_feeds(rng, parts, batch, source_length, used) for batch, used in ((1, 5), (2, 12))]
    dec_feeds = [_decoder_feeds(rng, parts, specs, batch, position, enc["attention_mask"])
                 for (batch, position), enc in zip(((1, 0), (2, 7)), enc_feeds)]
    graphs = {
        "encoder": ExportGraph("encoder", parts.encoder, specs.encoder_inputs, _tensors(enc_feeds[0], specs.encoder_inputs),
                               specs.encoder_outputs, specs.output_axes, tuple(enc_feeds)),
        "decoder": ExportGraph("decoder", StaticDecoderGraph(parts.decoder.model), specs.decoder_inputs,
                               _tensors(dec_feeds[0], specs.decoder_inputs), specs.decoder_outputs, specs.output_axes,
                               tuple(dec_feeds), keep_inputs=True),
    }
    timed_mask = np.zeros((1, source_length), np.int64)
    timed_mask[:, :TIMED_SOURCE] = 1
    timed = _decoder_feeds(np.random.default_rng(2), parts, specs, 1, TIMED_POSITION, timed_mask)
    model = {**dynamic.extra["model"], "static": {"source_length": source_length, "cache_length": cache_length}}
    return replace(
        dynamic, graphs=graphs, extra={**dynamic.extra, "model": model},
        chained_check=partial(_check_static_chain, parts),
        timing=HostTiming("decoder", timed, f"one decoder step: token {TIMED_POSITION + 1} of a {TIMED_SOURCE}-token "
                          f"source padded to {source_length}, cache of {cache_length}, batch 1"),
    )
