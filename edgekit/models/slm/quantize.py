"""int8 (dynamic, weight int8) and fp16 variants of an LM bundle's decoder, and how far they drift from fp32.

:func:`decoder_variant` writes a copy of a bundle whose decoder graph is quantized with
``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized on the fly) or
converted with onnxruntime's float16 converter (fp16 weights and compute, fp32 inputs and outputs);
:func:`compare` measures, on held-out examples of the training task, greedy token agreement with
fp32, exact match and the teacher-forced loss change. ``python -m edgekit.tools.slm_quantize`` runs
both on a freshly exported model.

Example:
    >>> from edgekit.models.slm.quantize import VARIANTS
    >>> VARIANTS
    ('int8', 'fp16')
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgekit.runtimes.bundle import MANIFEST_NAME, BundleWriter, Graph, read_bundle
from edgekit.runtimes.errors import UsageError, require

__all__ = ["VARIANTS", "decoder_variant", "compare"]

VARIANTS = ("int8", "fp16")


def _quantize_file(source: Path, target: Path, precision: str) -> dict:
    if precision == "int8":
        quantization = require("onnxruntime.quantization", "export")
        quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8,
                                      per_channel=True, reduce_range=True)
        return {"method": "onnxruntime quantize_dynamic", "weight_type": "QInt8", "per_channel": True, "reduce_range": True}
    onnx = require("onnx", "export")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}


def decoder_variant(bundle_dir: str | Path, out: str | Path, precision: str) -> Path:
    """Write a copy of ``bundle_dir`` whose decoder graph is ``precision`` ("int8" or "fp16").

    Example:
        >>> decoder_variant("t5-bundle", "t5-int8", "int8")   # doctest: +SKIP
    """
    if precision not in VARIANTS:
        raise UsageError(f"precision {precision!r} is not one of {VARIANTS}")
    bundle = read_bundle(bundle_dir)
    manifest = bundle.manifest
    decoder = manifest.graph("decoder")
    new_file = f"decoder.{precision}.onnx"
    with BundleWriter(out) as stage:
        for name in manifest.files:
            if name == decoder.file:
                continue
            (stage.path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle.path / name, stage.path / name)
        info = _quantize_file(bundle.path / decoder.file, stage.path / new_file, precision)
        graphs = {**manifest.graphs, "decoder": Graph(new_file, decoder.inputs, decoder.outputs)}
        stage.commit(replace(
            manifest, precision=f"{precision} (decoder)", graphs=graphs, files={},
            provenance={**manifest.provenance, "quantization": {"graph": "decoder", "precision": precision, **info}},
        ))
    assert not (Path(out) / decoder.file).exists() or decoder.file == new_file
    return Path(out)


def _loss(lm, pairs, kind: str) -> float:
    """Mean teacher-forced cross-entropy of the target tokens (the run() of the bundle's session)."""
    from .train import encode_pairs

    data = encode_pairs(pairs, kind)
    if kind == "encoder-decoder":
        logits = lm.run({"input_ids": data["src"], "attention_mask": (data["src"] != 0).astype(np.int64),
                         "decoder_input_ids": data["dec"]})["logits"]
    else:
        logits = lm.run({"input_ids": data["ids"], "attention_mask": (data["ids"] != 0).astype(np.int64)})["logits"]
    labels = data["labels"]
    keep = labels != -100
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, np.where(keep, labels, 0)[..., None], axis=-1)[..., 0]
    return float(-(picked * keep).sum() / keep.sum())


def _greedy(lm, pairs, max_new_tokens: int = 12) -> list[list[int]]:
    prompts = [lm.tokenizer.encode(s) for s, _ in pairs]
    rows = lm.generate(prompts, max_new_tokens=max_new_tokens).tolist()
    skip = 1 if lm.bundle.manifest.task == "seq2seq" else max(map(len, prompts))
    eos = set(lm.generation["eos_token_id"])
    out = []
    for row in rows:
        row = row[skip:]
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        out.append(row[: cut + 1])
    return out


def compare(bundles: dict[str, Path], pairs, batch: int = 50) -> dict[str, dict]:
    """Greedy outputs, token agreement with the first bundle (fp32), exact match and loss per bundle."""
    import edgekit.runtimes as rt

    results: dict[str, dict] = {}
    reference = None
    for name, path in bundles.items():
        lm = rt.load(path, threads=1)
        kind = lm.model_info["kind"]
        start = time.perf_counter()
        outputs = [o for i in range(0, len(pairs), batch) for o in _greedy(lm, pairs[i : i + batch])]
        seconds = time.perf_counter() - start
        loss = float(np.mean([_loss(lm, pairs[i : i + batch], kind) for i in range(0, len(pairs), batch)]))
        texts = [lm.tokenizer.decode(o) for o in outputs]
        row = {"exact_match": float(np.mean([t == target for t, (_, target) in zip(texts, pairs)])), "loss": loss,
               "generate_s": round(seconds, 2), "decoder_bytes": (Path(path) / lm.bundle.manifest.graph("decoder").file).stat().st_size}
        if reference is None:
            reference = (outputs, loss)
        else:
            ref_out, ref_loss = reference
            same = sum(a == b for x, y in zip(outputs, ref_out) for a, b in zip(x, y))
            total = sum(max(len(x), len(y)) for x, y in zip(outputs, ref_out))
            row.update({"token_agreement": same / total,
                        "sequences_identical": float(np.mean([x == y for x, y in zip(outputs, ref_out)])),
                        "loss_change": loss - ref_loss})
        results[name] = row
    return results
