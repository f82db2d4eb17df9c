"""Export an encoder-decoder or decoder-only LM to a generation bundle (the ``FAMILY_EXPORTERS`` hook).

Each graph is exported with :func:`edgekit.exporters.onnx.export_onnx` and checked against its torch
module with :func:`edgekit.exporters.onnx.validate` on explicit feeds (padded masks, a past of length
0 and longer pasts). Then the exported graphs are chained step by step in onnxruntime, KV cache and
all, and compared with the source model's own teacher-forced forward; any failure raises
``ValidationError`` and nothing is written.

Example:
    >>> from edgekit.pipeline import ExportRequest, export_bundle          # doctest: +SKIP
    >>> from edgekit.models.registry import ModelRequest                   # doctest: +SKIP
    >>> export_bundle(ExportRequest(out="t5-bundle", model=ModelRequest("hf:/path/to/t5")))  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

import edgekit
from edgekit.exporters.onnx import OnnxExportOptions, export_onnx, validate
from edgekit.runtimes.bundle import Graph, Manifest
from edgekit.runtimes.errors import UsageError, ValidationError

from .graphs import CausalParts, Seq2SeqParts

__all__ = ["export_family", "export_parts", "resolve_parts", "BUILTIN_CHECKPOINTS"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
BUILTIN_CHECKPOINTS = {"slm-encdec": WEIGHTS_DIR / "slm_encdec.pt", "slm-deconly": WEIGHTS_DIR / "slm_deconly.pt"}

Progress = Callable[[str], None]


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


def _worst(got: np.ndarray, ref: np.ndarray, atol: float, rtol: float, where: str) -> float:
    diff = np.abs(got - ref)
    if got.shape != ref.shape or not np.all(diff <= atol + rtol * np.abs(ref)):
        worst = float(diff.max()) if got.shape == ref.shape else float("inf")
        raise ValidationError(
            f"{where}: the exported graphs chained with their KV cache differ from the source model's forward "
            f"by up to {worst:.3g} (atol {atol:g} + rtol {rtol:g}); the export is wrong and was not saved"
        )
    return float(diff.max(initial=0.0))


def _check_seq2seq_chain(parts: Seq2SeqParts, enc_path: Path, dec_path: Path, atol: float, rtol: float) -> float:
    """Encoder once, decoder for 1 token with an empty past, then 2 and 1 more tokens with the cache."""
    import torch

    from edgekit.runtimes.ort import OrtSession

    specs = parts.specs
    encoder = OrtSession(enc_path, inputs=specs.encoder_inputs)
    decoder = OrtSession(dec_path)
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
    return _worst(np.concatenate(logits, axis=1), ref.float().numpy(), atol, rtol, f"{parts.name}")


def _check_causal_chain(parts: CausalParts, dec_path: Path, atol: float, rtol: float) -> float:
    import torch

    from edgekit.runtimes.ort import OrtSession

    decoder = OrtSession(dec_path)
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
    return _worst(got[keep], ref[keep], atol, rtol, f"{parts.name}")


def export_parts(
    parts: Seq2SeqParts | CausalParts, stage_dir: Path, progress: Progress, atol: float = 1e-4, rtol: float = 1e-3,
    opset: int = 17,
) -> tuple[dict[str, Graph], dict[str, Any]]:
    """Export and validate every graph of ``parts`` into ``stage_dir``; returns manifest graphs and validation."""
    specs = parts.specs
    options = OnnxExportOptions(opset=opset, metadata={"edgekit_version": edgekit.__version__, "model": parts.name})
    rng = np.random.default_rng(0)
    graphs: dict[str, Graph] = {}
    validation: dict[str, Any] = {"runtime": "onnxruntime", "passed": True, "graphs": {}}
    stage_dir = Path(stage_dir)
    if isinstance(parts, Seq2SeqParts):
        enc_feeds, dec_feeds = _seq2seq_feeds(parts, rng)
        example = tuple(__import__("torch").from_numpy(v) for v in enc_feeds[2].values())
        progress(f"exporting {parts.name} encoder")
        enc = export_onnx(parts.encoder, specs.encoder_inputs, example, stage_dir / "encoder.onnx",
                          output_names=specs.encoder_outputs, output_axes=specs.output_axes, options=options)
        report = validate(enc.path, parts.encoder, enc.inputs, feeds=enc_feeds, atol=atol, rtol=rtol)
        validation["graphs"]["encoder"] = report.to_json()
        graphs["encoder"] = Graph("encoder.onnx", enc.inputs, enc.outputs)
    else:
        dec_feeds = _causal_feeds(parts, rng)
    progress(f"exporting {parts.name} decoder (KV cache)")
    import torch

    example = tuple(torch.from_numpy(dec_feeds[2][s.name]) for s in specs.decoder_inputs)
    dec = export_onnx(parts.decoder, specs.decoder_inputs, example, stage_dir / "decoder.onnx",
                      output_names=specs.decoder_outputs, output_axes=specs.output_axes, options=options)
    if [s.name for s in dec.inputs] != [s.name for s in specs.decoder_inputs]:
        dropped = sorted({s.name for s in specs.decoder_inputs} - {s.name for s in dec.inputs})
        raise ValidationError(f"{parts.name}: the decoder graph lost inputs {dropped} in export")
    report = validate(dec.path, parts.decoder, dec.inputs, feeds=dec_feeds, atol=atol, rtol=rtol)
    validation["graphs"]["decoder"] = report.to_json()
    graphs["decoder"] = Graph("decoder.onnx", dec.inputs, dec.outputs)
    progress("checking the chained graphs against the source model")
    if isinstance(parts, Seq2SeqParts):
        worst = _check_seq2seq_chain(parts, stage_dir / "encoder.onnx", stage_dir / "decoder.onnx", atol * 10, rtol)
    else:
        worst = _check_causal_chain(parts, stage_dir / "decoder.onnx", atol * 10, rtol)
    validation["chained_vs_source"] = {"max_abs_error": worst, "atol": atol * 10, "rtol": rtol, "passed": True}
    validation["max_abs_error"] = {
        name: max(g["max_abs_error"].values(), default=0.0) for name, g in validation["graphs"].items()
    }
    validation["atol"], validation["rtol"] = atol, rtol
    return graphs, validation


def _copy_tokenizer(tokenizer: Mapping[str, Any], stage_dir: Path) -> dict[str, Any]:
    files = []
    for source in tokenizer.get("source_files", []):
        source = Path(source)
        (stage_dir / "tokenizer").mkdir(exist_ok=True)
        shutil.copyfile(source, stage_dir / "tokenizer" / source.name)
        files.append(f"tokenizer/{source.name}")
    framing = {k: list(tokenizer[k]) for k in ("prefix", "suffix") if k in tokenizer}
    return {"kind": tokenizer["kind"], "files": files, **framing}


def export_family(request, target, stage_dir: Path, progress: Progress) -> Manifest:
    """The pipeline hook: export ``request.model.ref`` into ``stage_dir``; the pipeline writes the bundle."""
    from edgekit.pipeline import toolchain_versions

    if request.precision != "fp32":
        raise UsageError(
            f"--precision {request.precision}: LM bundles export as fp32; make int8/fp16 decoder variants with "
            "python -m edgekit.models.slm.quantize"
        )
    progress(f"loading model {request.model.ref}")
    parts, tokenizer = resolve_parts(request.model.ref)
    graphs, validation = export_parts(parts, Path(stage_dir), progress, atol=request.atol, rtol=request.rtol,
                                      opset=request.opset)
    seq2seq = isinstance(parts, Seq2SeqParts)
    extra = {
        "generation": dict(parts.generation),
        "model": {
            "kind": "encoder-decoder" if seq2seq else "decoder-only",
            "layers": parts.layers,
            "heads": parts.heads,
            "head_dim": parts.head_dim,
            "d_model": parts.d_model,
            "vocab_size": parts.vocab_size,
            "max_source_length": parts.max_source_length,
        },
        "tokenizer": _copy_tokenizer(tokenizer, Path(stage_dir)),
    }
    return Manifest(
        target=target.name,
        format="onnx",
        precision="fp32",
        graphs=graphs,
        task="seq2seq" if seq2seq else "causal-lm",
        name=parts.name,
        edgekit_version=edgekit.__version__,
        provenance={**parts.provenance, "exporter": "torch.onnx (TorchScript)", "opset": request.opset},
        validation=validation,
        toolchain=toolchain_versions(),
        extra=extra,
    )
