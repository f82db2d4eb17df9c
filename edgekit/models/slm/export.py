"""The language-model family (``slm-encdec``, ``slm-deconly``, ``slm:FILE.pt``, ``hf:DIR``): its graphs
and data for the export pipeline.

:func:`slm_source` describes the encoder and KV-cache decoder graphs (or the decoder alone), each with
explicit validation feeds (padded masks, a past of length 0 and longer pasts), plus the family's hook
that chains the exported graphs step by step, KV cache and all, in the format's runtime and compares
them with the source model's own teacher-forced forward (any failure raises ``ValidationError`` and
nothing is written), what the pipeline times on the host (one decoder step), the generation config
and the tokenizer. The pipeline exports, validates, times and writes the bundle as for any model.

Example:
    >>> from edgekit.pipeline import ExportRequest, export_bundle          # doctest: +SKIP
    >>> from edgekit.models.registry import ModelRequest                   # doctest: +SKIP
    >>> export_bundle(ExportRequest(out="t5-bundle", model=ModelRequest("hf:/path/to/t5")))  # doctest: +SKIP
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.session import Session

from ..source import FamilyData, HostTiming, ModelRequest, ModelSource, Tokenizer
from .graphs import CausalParts, Seq2SeqParts, chain_error

__all__ = ["slm_source", "parts_source", "resolve_parts", "BUILTIN_CHECKPOINTS", "TIMED_PAST", "TIMED_SOURCE"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BUILTIN_CHECKPOINTS = {"slm-encdec": WEIGHTS_DIR / "slm_encdec.pt", "slm-deconly": WEIGHTS_DIR / "slm_deconly.pt"}
TIMED_PAST, TIMED_SOURCE = 15, 16  # the decoder step timed on the host: token 16 of 16-token source and target


def resolve_parts(ref: str) -> tuple[Seq2SeqParts | CausalParts, dict[str, Any]]:
    """Model reference -> graph parts and tokenizer info (``{"kind": ..., "source_files": [...]}``).

    ``slm-encdec`` / ``slm-deconly``: the shipped checkpoints; ``slm:FILE.pt``: your own checkpoint;
    ``hf:DIR``: a Hugging Face T5 or BART directory (``save_pretrained`` layout).
    """
    from .graphs import slm_parts
    from .model import load_checkpoint

    if ref in BUILTIN_CHECKPOINTS or ref.startswith("slm:"):
        path = BUILTIN_CHECKPOINTS.get(ref) or Path(ref[len("slm:"):])
        model = load_checkpoint(path)
        provenance = {"model": ref, "checkpoint": path.name, **getattr(model, "meta", {})}
        name = ref if ref in BUILTIN_CHECKPOINTS else path.stem
        c = model.config
        framing = {"prefix": [], "suffix": [c.eos_token_id]} if c.kind == "encoder-decoder" else {
            "prefix": [c.bos_token_id], "suffix": [c.sep_token_id]}
        return slm_parts(model, name, provenance), {"kind": "byte", "source_files": [], **framing}
    if ref.startswith("hf:"):
        from .hf import hf_parts

        return hf_parts(Path(ref[len("hf:"):]))
    raise UsageError(f"--model {ref!r}: expected slm-encdec, slm-deconly, slm:FILE.pt or hf:DIR")


def _rng_ids(rng: np.random.Generator, vocab: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, vocab, size=shape).astype(np.int64)


def _padded_mask(batch: int, length: int) -> np.ndarray:
    mask = np.ones((batch, length), np.int64)
    for row in range(1, batch):  # later rows are shorter (right padding)
        mask[row, max(1, length - 2 * row):] = 0
    return mask


def _kv(rng, batch, heads, length, head_dim) -> np.ndarray:
    return rng.standard_normal((batch, heads, length, head_dim)).astype(np.float32)


def _seq2seq_feeds(parts: Seq2SeqParts, rng) -> tuple[list[dict], list[dict]]:
    enc, dec = [], []
    for batch, src, past, tgt in ((1, 4, 0, 1), (3, 7, 0, 1), (2, 5, 3, 1), (2, 6, 2, 3)):
        enc.append({"input_ids": _rng_ids(rng, parts.vocab_size, (batch, src)), "attention_mask": _padded_mask(batch, src)})
        feed = {"decoder_input_ids": _rng_ids(rng, parts.vocab_size, (batch, tgt)), "encoder_attention_mask": _padded_mask(batch, src)}
        for spec in parts.specs.decoder_inputs[2:]:
            length = past if spec.name.startswith("past") else src
            feed[spec.name] = _kv(rng, batch, parts.heads, length, parts.head_dim)
        dec.append(feed)
    return enc, dec


def _causal_feeds(parts: CausalParts, rng) -> list[dict]:
    feeds = []
    for batch, past, seq in ((1, 0, 4), (3, 0, 6), (2, 3, 1), (2, 2, 3)):
        mask = np.ones((batch, past + seq), np.int64)
        mask[1:, :1] = 0  # left padding on later rows
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)[:, past:]
        feed = {"input_ids": _rng_ids(rng, parts.vocab_size, (batch, seq)), "attention_mask": mask, "position_ids": positions}
        for spec in parts.specs.decoder_inputs[3:]:
            feed[spec.name] = _kv(rng, batch, parts.heads, past, parts.head_dim)
        feeds.append(feed)
    return feeds


def _step_feeds(parts: Seq2SeqParts | CausalParts, past: int = TIMED_PAST, source: int = TIMED_SOURCE) -> dict:
    """One decoder step at batch 1: a new token after ``past`` cached ones (and a ``source``-token input)."""
    rng = np.random.default_rng(2)
    if isinstance(parts, Seq2SeqParts):
        feed = {"decoder_input_ids": _rng_ids(rng, parts.vocab_size, (1, 1)), "encoder_attention_mask": np.ones((1, source), np.int64)}
        kv = parts.specs.decoder_inputs[2:]
    else:
        feed = {"input_ids": _rng_ids(rng, parts.vocab_size, (1, 1)), "attention_mask": np.ones((1, past + 1), np.int64),
                "position_ids": np.array([[past]], np.int64)}
        kv = parts.specs.decoder_inputs[3:]
    for spec in kv:
        feed[spec.name] = _kv(rng, 1, parts.heads, past if spec.name.startswith("past") else source, parts.head_dim)
    return feed


def _check_seq2seq_chain(parts: Seq2SeqParts, encoder: Session, decoder: Session, atol: float, rtol: float) -> float:
    """Encoder once, decoder for 1 token with an empty past, then 2 and 1 more tokens with the cache."""
    import torch

    specs = parts.specs
    rng = np.random.default_rng(1)
    ids = _rng_ids(rng, parts.vocab_size, (2, 6))
    mask = _padded_mask(2, 6)
    dec_ids = _rng_ids(rng, parts.vocab_size, (2, 4))
    cross = encoder.run({"input_ids": ids, "attention_mask": mask})
    past = {s.name: np.zeros((2, parts.heads, 0, parts.head_dim), np.float32) for s in specs.decoder_inputs if s.name.startswith("past")}
    logits = []
    for start, stop in ((0, 1), (1, 3), (3, 4)):
        out = decoder.run({"decoder_input_ids": dec_ids[:, start:stop], "encoder_attention_mask": mask, **past, **cross})
        logits.append(out["logits"])
        past = {name.replace("present", "past"): value for name, value in out.items() if name.startswith("present")}
    with torch.no_grad():
        ref = parts.reference(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(dec_ids))
    return chain_error(np.concatenate(logits, axis=1), ref.float().numpy(), atol, rtol, f"{parts.name}")


def _check_causal_chain(parts: CausalParts, decoder: Session, atol: float, rtol: float) -> float:
    import torch

    rng = np.random.default_rng(1)
    ids = _rng_ids(rng, parts.vocab_size, (2, 7))
    mask = np.ones((2, 7), np.int64)
    mask[1, :2] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    past = {s.name: np.zeros((2, parts.heads, 0, parts.head_dim), np.float32) for s in parts.specs.decoder_inputs if s.name.startswith("past")}
    logits = []
    for start, stop in ((0, 4), (4, 5), (5, 7)):
        out = decoder.run({"input_ids": ids[:, start:stop], "attention_mask": mask[:, :stop], "position_ids": positions[:, start:stop], **past})
        logits.append(out["logits"])
        past = {name.replace("present", "past"): value for name, value in out.items() if name.startswith("present")}
    with torch.no_grad():
        ref = parts.reference(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
    got = np.concatenate(logits, axis=1)
    keep = mask.astype(bool)  # padded query rows carry no meaning
    return chain_error(got[keep], ref[keep], atol, rtol, f"{parts.name}")


def _check_chain(parts: Seq2SeqParts | CausalParts, open_graph: Callable[[str], Session], atol: float,
                 rtol: float) -> dict[str, Any]:
    """The family's chained check (``ModelSource.chained_check``), at 10x the per-graph ``atol``: errors
    add up over the steps of the cache."""
    if isinstance(parts, Seq2SeqParts):
        worst = _check_seq2seq_chain(parts, open_graph("encoder"), open_graph("decoder"), atol * 10, rtol)
    else:
        worst = _check_causal_chain(parts, open_graph("decoder"), atol * 10, rtol)
    return {"max_abs_error": worst, "atol": atol * 10, "rtol": rtol, "passed": True}


def _tensors(feed: Mapping[str, np.ndarray], specs) -> tuple:
    import torch

    return tuple(torch.from_numpy(feed[s.name]) for s in specs)


MAX_BATCH, MAX_STEP_TOKENS = 16, 16  # rows x beams; tokens in one decoder call (a verified draft block)


def _axis_ranges(max_length: int) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of each length axis, for engines built with optimisation profiles (TensorRT): opt is the
    step the pipeline times (16 source tokens, 15 cached, 1 new), max the model's max length; the first decoder
    step feeds an empty past."""
    opt = {"batch": 1, "src_len": TIMED_SOURCE, "past_len": TIMED_PAST, "tgt_len": 1, "seq_len": 1,
           "total_len": TIMED_PAST + 1}
    top = {"batch": MAX_BATCH, "tgt_len": MAX_STEP_TOKENS, "seq_len": max_length}
    return {axis: (0 if axis == "past_len" else 1, value, top.get(axis, max_length)) for axis, value in opt.items()}


def parts_source(parts: Seq2SeqParts | CausalParts, tokenizer: Mapping[str, Any]) -> ModelSource:
    """The model source of an LM's graph parts: its graphs with their validation feeds, the chained check,
    the decoder step the pipeline times, and the generation config and tokenizer for the manifest."""
    specs = parts.specs
    rng = np.random.default_rng(0)
    graphs: dict[str, ExportGraph] = {}
    seq2seq = isinstance(parts, Seq2SeqParts)
    ranges = _axis_ranges(parts.max_source_length)
    if seq2seq:
        enc_feeds, dec_feeds = _seq2seq_feeds(parts, rng)
        graphs["encoder"] = ExportGraph("encoder", parts.encoder, specs.encoder_inputs,
                                        _tensors(enc_feeds[2], specs.encoder_inputs), specs.encoder_outputs,
                                        specs.output_axes, tuple(enc_feeds), axis_ranges=ranges)
    else:
        dec_feeds = _causal_feeds(parts, rng)
    graphs["decoder"] = ExportGraph("decoder", parts.decoder, specs.decoder_inputs,
                                    _tensors(dec_feeds[2], specs.decoder_inputs), specs.decoder_outputs,
                                    specs.output_axes, tuple(dec_feeds), keep_inputs=True, axis_ranges=ranges)
    model = {"kind": "encoder-decoder" if seq2seq else "decoder-only", "layers": parts.layers, "heads": parts.heads,
             "head_dim": parts.head_dim, "d_model": parts.d_model, "vocab_size": parts.vocab_size,
             "max_source_length": parts.max_source_length}
    framing = {k: tuple(tokenizer[k]) for k in ("prefix", "suffix") if k in tokenizer}
    source_text = f", a {TIMED_SOURCE}-token source" if seq2seq else ""
    return ModelSource(
        parts.name, graphs, "seq2seq" if seq2seq else "causal-lm", provenance=dict(parts.provenance),
        extra={"model": model},
        data=FamilyData(generation=dict(parts.generation),
                        tokenizer=Tokenizer(tokenizer["kind"], tuple(Path(f) for f in tokenizer.get("source_files", [])),
                                            **framing)),
        chained_check=partial(_check_chain, parts),
        timing=HostTiming("decoder", _step_feeds(parts),
                          f"one decoder step: 1 new token after {TIMED_PAST} cached{source_text}, batch 1"),
    )


def slm_source(request: ModelRequest) -> ModelSource:
    """The family's source function (registry: slm-encdec, slm-deconly, slm:FILE.pt, hf:DIR)."""
    parts, tokenizer = resolve_parts(str(request.ref))
    source = parts_source(parts, tokenizer)
    if request.static_shapes:  # TFLite: a padded source and a fixed-size KV cache written at an index
        from .static import static_source

        return static_source(parts, source)
    return source
