"""The graphs an encoder-decoder or decoder-only LM exports to, described once for every model family.

Seq2seq (task "seq2seq"):
  encoder: input_ids, attention_mask [batch, src_len] -> cross_key_i, cross_value_i [batch, heads, src_len, head_dim]
  decoder: decoder_input_ids [batch, tgt_len], encoder_attention_mask [batch, src_len],
           past_key_i, past_value_i [batch, heads, past_len, head_dim], cross_key_i, cross_value_i
           -> logits [batch, tgt_len, vocab], present_key_i, present_value_i [batch, heads, total_len, head_dim]
Decoder-only (task "causal-lm"):
  decoder: input_ids, position_ids [batch, seq_len], attention_mask [batch, total_len], past_key_i, past_value_i
           -> logits, present_key_i, present_value_i

Why one decoder graph and cross keys/values in the encoder graph: the cross-attention projections
depend only on the encoder output, so the encoder graph emits them once per input; the decoder graph
then never needs a "first step" branch (Hugging Face's cache carries an ``is_updated`` Python flag
that tracing would freeze, forcing two decoder graphs or an ``If``). The first step feeds a past of
length 0, which onnxruntime handles as an empty tensor, so one decoder file serves every step and the
bundle carries the decoder weights once instead of twice.

Example:
    >>> parts = seq2seq_specs(layers=1, heads=2, head_dim=8, vocab_size=50)
    >>> [s.name for s in parts.decoder_inputs][:3]
    ['decoder_input_ids', 'encoder_attention_mask', 'past_key_0']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from edgekit.runtimes.errors import ValidationError
from edgekit.runtimes.spec import TensorSpec

__all__ = [
    "GraphSpecs",
    "seq2seq_specs",
    "causal_specs",
    "Seq2SeqParts",
    "CausalParts",
    "SlmEncoderGraph",
    "SlmDecoderGraph",
    "SlmCausalGraph",
    "slm_parts",
    "chain_error",
]


def _kv_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class GraphSpecs:
    """Input specs and output names/axes of each graph, for export and for the manifest."""

    encoder_inputs: tuple[TensorSpec, ...]
    encoder_outputs: tuple[str, ...]
    decoder_inputs: tuple[TensorSpec, ...]
    decoder_outputs: tuple[str, ...]
    output_axes: Mapping[str, Mapping[int, str]]


def seq2seq_specs(layers: int, heads: int, head_dim: int, vocab_size: int) -> GraphSpecs:
    """Specs of the encoder and decoder graphs of a seq2seq LM with ``layers`` decoder layers."""
    kv = lambda name, axis: TensorSpec(name, ("batch", heads, axis, head_dim), "float32")  # noqa: E731
    cross = [kv(n, "src_len") for n in _kv_names("cross", layers)]
    past = [kv(n, "past_len") for n in _kv_names("past", layers)]
    present = _kv_names("present", layers)
    axes: dict[str, dict[int, str]] = {n.name: {0: "batch", 2: "src_len"} for n in cross}
    axes.update({n: {0: "batch", 2: "total_len"} for n in present})
    axes["logits"] = {0: "batch", 1: "tgt_len"}
    return GraphSpecs(
        encoder_inputs=(
            TensorSpec("input_ids", ("batch", "src_len"), "int64"),
            TensorSpec("attention_mask", ("batch", "src_len"), "int64"),
        ),
        encoder_outputs=tuple(s.name for s in cross),
        decoder_inputs=(
            TensorSpec("decoder_input_ids", ("batch", "tgt_len"), "int64"),
            TensorSpec("encoder_attention_mask", ("batch", "src_len"), "int64"),
            *past,
            *cross,
        ),
        decoder_outputs=("logits", *present),
        output_axes=axes,
    )


def causal_specs(layers: int, heads: int, head_dim: int, vocab_size: int) -> GraphSpecs:
    """Specs of the single decoder graph of a decoder-only LM (no encoder graph)."""
    past = [TensorSpec(n, ("batch", heads, "past_len", head_dim), "float32") for n in _kv_names("past", layers)]
    present = _kv_names("present", layers)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 2: "total_len"} for n in present}
    axes["logits"] = {0: "batch", 1: "seq_len"}
    return GraphSpecs(
        encoder_inputs=(),
        encoder_outputs=(),
        decoder_inputs=(
            TensorSpec("input_ids", ("batch", "seq_len"), "int64"),
            TensorSpec("attention_mask", ("batch", "total_len"), "int64"),
            TensorSpec("position_ids", ("batch", "seq_len"), "int64"),
            *past,
        ),
        decoder_outputs=("logits", *present),
        output_axes=axes,
    )


@dataclass(frozen=True)
class Seq2SeqParts:
    """What a seq2seq family hands the exporter: two graph modules, a reference forward and metadata.

    ``reference(input_ids, attention_mask, decoder_input_ids) -> logits`` is the source model's own
    teacher-forced forward; the exported graphs, chained step by step, must reproduce it.
    """

    name: str
    encoder: nn.Module
    decoder: nn.Module
    reference: Callable[..., torch.Tensor]
    layers: int
    heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    generation: Mapping[str, Any]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    max_source_length: int = 512

    @property
    def specs(self) -> GraphSpecs:
        return seq2seq_specs(self.layers, self.heads, self.head_dim, self.vocab_size)


@dataclass(frozen=True)
class CausalParts:
    """A decoder-only family: one graph module, ``reference(input_ids, attention_mask) -> logits``."""

    name: str
    decoder: nn.Module
    reference: Callable[..., torch.Tensor]
    layers: int
    heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    generation: Mapping[str, Any]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    max_source_length: int = 2048

    @property
    def specs(self) -> GraphSpecs:
        return causal_specs(self.layers, self.heads, self.head_dim, self.vocab_size)


def _pairs(flat: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _flat(pairs) -> tuple[torch.Tensor, ...]:
    return tuple(t for pair in pairs for t in pair)


class SlmEncoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return _flat(self.model.cross_kv(self.model.encode(input_ids, attention_mask)))


class SlmDecoderGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.layers = model.config.decoder_layers

    def forward(self, decoder_input_ids, encoder_attention_mask, *kv):
        past, cross = _pairs(kv[: 2 * self.layers]), _pairs(kv[2 * self.layers :])
        logits, presents = self.model.decode(decoder_input_ids, encoder_attention_mask, cross, past)
        return (logits, *_flat(presents))


class SlmCausalGraph(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        logits, presents = self.model.step(input_ids, attention_mask, position_ids, _pairs(past))
        return (logits, *_flat(presents))


def slm_generation(config) -> dict[str, Any]:
    if config.kind == "encoder-decoder":
        start = config.bos_token_id
    else:
        start = None
    return {
        "decoder_start_token_id": start,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": [config.eos_token_id],
        "pad_token_id": config.pad_token_id,
        "sep_token_id": config.sep_token_id,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "max_new_tokens": 64,
    }


def slm_parts(model, name: str, provenance: Mapping[str, Any] | None = None) -> Seq2SeqParts | CausalParts:
    """Graph parts of an edgekit SLM (either kind).

    Example:
        >>> from edgekit.models.slm.config import SlmConfig
        >>> from edgekit.models.slm.model import build_model
        >>> parts = slm_parts(build_model(SlmConfig(d_model=32, n_heads=2, d_ff=64, encoder_layers=1, decoder_layers=1)), "tiny")
        >>> parts.layers, parts.head_dim
        (1, 16)
    """
    c = model.config
    common = dict(
        name=name,
        layers=c.decoder_layers,
        heads=c.n_heads,
        head_dim=c.head_dim,
        d_model=c.d_model,
        vocab_size=c.vocab_size,
        generation=slm_generation(c),
        provenance=dict(provenance or {}),
        max_source_length=c.max_length,
    )
    model = model.eval()
    if c.kind == "encoder-decoder":
        return Seq2SeqParts(encoder=SlmEncoderGraph(model), decoder=SlmDecoderGraph(model), reference=model, **common)
    return CausalParts(decoder=SlmCausalGraph(model), reference=model, **common)


def chain_error(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float, where: str) -> float:
    """The largest error of chained graphs' logits against the source model's; ValidationError above tolerance."""
    diff = np.abs(got - ref)
    if got.shape != ref.shape or not np.all(diff <= atol + rtol * np.abs(ref)):
        worst = float(diff.max()) if got.shape == ref.shape else float("inf")
        raise ValidationError(
            f"{where}: the exported graphs chained with their KV cache differ from the source model's forward "
            f"by up to {worst:.3g} (atol {atol:g} + rtol {rtol:g}); the export is wrong and was not saved"
        )
    return float(diff.max(initial=0.0))
