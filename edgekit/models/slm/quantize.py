"""int8 (dynamic, weight int8) and fp16 variants of an LM bundle's decoder, and how far they drift from fp32.

:func:`decoder_variant` writes a copy of a bundle whose decoder graph (self/cross attention, MLP and the
LM head: every MatMul weight) is quantized with ``onnxruntime.quantization.quantize_dynamic`` (int8
weights, activations quantized on the fly) or converted with onnxruntime's float16 converter (fp16
weights and compute, fp32 inputs and outputs); the export also converts the encoder and keeps it when it
runs faster on this host (T5-small size int8: 3.4x; the shipped ~1M model: measured each time). :func:`agreement` measures greedy token agreement with fp32 and the
task score on the family's data (the letters task of edgekit's own models; seeded random prompts for
``hf:DIR``). :func:`export_variant` is the family's precision hook behind ``edgekit export --precision
int8|fp16``: it makes the variant from the fp32 bundle, measures it, and refuses it below the threshold.
``python -m edgekit.tools.slm_quantize`` prints the comparison for a freshly exported model.

Example:
    >>> from edgekit.models.slm.quantize import VARIANTS
    >>> VARIANTS
    ('int8', 'fp16')
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.runtimes.bundle import Graph, Manifest, read_bundle
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import UsageError, ValidationError, require

__all__ = ["VARIANTS", "decoder_variant", "compare", "agreement", "task_prompts", "export_variant", "agreement_line"]

VARIANTS = ("int8", "fp16")
AGREEMENT_EXAMPLES = 200  # held-out examples (or random prompts) the export measures a variant on
RANDOM_PROMPT_TOKENS = 16  # new tokens per random prompt (hf:DIR: no task data)


def _quantize_tflite(source: Path, target: Path, precision: str) -> dict:
    """int8: ai-edge-quantizer's dynamic-range recipe (int8 weights, float activations: the counterpart of
    onnxruntime's quantize_dynamic, no calibration); fp16: the TFLite exporter's weight-only float casting."""
    if precision == "fp16":
        from edgekit.exporters.tflite import TfliteExporter

        return TfliteExporter().write_variant(source, target, "fp16", ())
    from edgekit.exporters.onnx import _quiet

    with _quiet():
        quantizer = require("ai_edge_quantizer.quantizer", "tflite")
        recipes = require("ai_edge_quantizer.recipe", "tflite")
        result = quantizer.Quantizer(str(source), recipes.dynamic_wi8_afp32()).quantize(enable_progress_report=False)
    target.write_bytes(result.quantized_model)
    return {"method": "ai-edge-quantizer dynamic_wi8_afp32 (int8 weights, float activations)"}


def _quantize_file(source: Path, target: Path, precision: str) -> dict:
    if source.suffix == ".tflite":
        return _quantize_tflite(source, target, precision)
    if precision == "int8":
        quantization = require("onnxruntime.quantization", "export")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is for static quantization
        try:
            quantization.quantize_dynamic(str(source), str(target), weight_type=quantization.QuantType.QInt8,
                                          per_channel=True, reduce_range=True)
        finally:
            root.setLevel(level)
        return {"method": "onnxruntime quantize_dynamic", "weight_type": "QInt8", "per_channel": True, "reduce_range": True}
    onnx = require("onnx", "export")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}


def _write_variant(bundle, stage: Path, precision: str) -> tuple[dict[str, Graph], dict]:
    """Copy every file but the decoder into ``stage``, write the decoder variant; the new graphs and record."""
    manifest = bundle.manifest
    decoder = manifest.graph("decoder")
    new_file = f"decoder.{precision}{Path(decoder.file).suffix}"
    for name in manifest.files:
        if name == decoder.file:
            continue
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.path / name, stage / name)
    info = _quantize_file(bundle.path / decoder.file, stage / new_file, precision)
    graphs = {**manifest.graphs, "decoder": Graph(new_file, decoder.inputs, decoder.outputs)}
    return graphs, {"graph": "decoder", "precision": precision, **info}


def decoder_variant(bundle_dir: str | Path, out: str | Path, precision: str) -> Path:
    """Write a copy of ``bundle_dir`` whose decoder graph is ``precision`` ("int8" or "fp16"), unmeasured.

    Example:
        >>> decoder_variant("t5-bundle", "t5-int8", "int8")   # doctest: +SKIP
    """
    if precision not in VARIANTS:
        raise UsageError(f"precision {precision!r} is not one of {VARIANTS}")
    bundle = read_bundle(bundle_dir)
    manifest = bundle.manifest
    with BundleWriter(out) as stage:
        graphs, info = _write_variant(bundle, stage.path, precision)
        stage.commit(replace(manifest, precision=f"{precision} (decoder)", graphs=graphs, files={},
                             provenance={**manifest.provenance, "quantization": info}))
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


def _greedy(lm, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch: int = 50) -> list[list[int]]:
    """Each prompt's greedy new tokens, cut after the first EOS."""
    eos = set(lm.generation.get("eos_token_id") or ())
    out: list[list[int]] = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        rows = lm.completions(lm.generate(chunk, max_new_tokens=max_new_tokens), chunk)
        for row in rows:
            cut = next((j for j, t in enumerate(row) if t in eos), len(row))
            out.append(row[: cut + 1])
    return out


def token_agreement(outputs: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Positions where two greedy outputs agree, over the longer of each pair.

    Example:
        >>> token_agreement([[1, 2, 3]], [[1, 2, 4, 5]])
        0.5
    """
    same = sum(a == b for x, y in zip(outputs, reference) for a, b in zip(x, y))
    total = sum(max(len(x), len(y)) for x, y in zip(outputs, reference))
    return same / max(total, 1)


def task_prompts(manifest: Manifest, count: int = AGREEMENT_EXAMPLES) -> tuple[list[list[int]], list[str] | None, str, int]:
    """What a variant is measured on: prompts, their targets (None without task data), what they are, and
    how many new tokens to generate. edgekit's own models (byte tokenizer): held-out examples of their
    task; any other model: seeded random prompts of 4-24 tokens."""
    from .data import HELDOUT_SEED, TASKS, make_examples

    if manifest.extra["tokenizer"].get("kind") == "byte":
        from edgekit.runtimes.tokenizer import ByteTokenizer

        task = str(manifest.provenance.get("task", "letters")).split()[0]  # "letters (edgekit.models.slm.data)"
        task = task if task in TASKS else "letters"
        info = manifest.extra["tokenizer"]
        tokenizer = ByteTokenizer(info.get("prefix", ()), info.get("suffix", ()))
        pairs = list(make_examples(count, HELDOUT_SEED, task))
        return ([tokenizer.encode(s) for s, _ in pairs], [t for _, t in pairs],
                f"{count} held-out examples of the {task} task (seed {HELDOUT_SEED})", 12)
    vocab = int(manifest.extra["model"]["vocab_size"])
    rng = np.random.default_rng(0)
    low = min(3, vocab - 1)
    prompts = [rng.integers(low, vocab, size=int(rng.integers(4, 25))).tolist() for _ in range(count)]
    return prompts, None, f"{count} seeded random prompts of 4-24 tokens (no task data for this model)", RANDOM_PROMPT_TOKENS


def agreement(fp32, variant, prompts, targets, max_new_tokens: int) -> dict[str, Any]:
    """Greedy token agreement of ``variant`` with ``fp32`` (two loaded LM sessions), sequences identical,
    and each one's exact match on ``targets`` when given."""
    ref, got = _greedy(fp32, prompts, max_new_tokens), _greedy(variant, prompts, max_new_tokens)
    record: dict[str, Any] = {"token_agreement": token_agreement(got, ref),
                              "sequences_identical": float(np.mean([x == y for x, y in zip(got, ref)]))}
    if targets is not None:
        for name, lm, outputs in (("fp32", fp32, ref), ("variant", variant, got)):
            texts = [lm.tokenizer.decode(o) for o in outputs]
            record[f"exact_match_{name}"] = float(np.mean([t == target for t, target in zip(texts, targets)]))
    return record


def compare(bundles: dict[str, Path], pairs, batch: int = 50) -> dict[str, dict]:
    """Greedy outputs, token agreement with the first bundle (fp32), exact match and loss per bundle."""
    import edgekit.runtimes as rt

    results: dict[str, dict] = {}
    reference = None
    for name, path in bundles.items():
        lm = rt.load(path, threads=1)
        kind = lm.model_info["kind"]
        start = time.perf_counter()
        outputs = _greedy(lm, [lm.tokenizer.encode(s) for s, _ in pairs], 12, batch)
        seconds = time.perf_counter() - start
        loss = float(np.mean([_loss(lm, pairs[i : i + batch], kind) for i in range(0, len(pairs), batch)]))
        texts = [lm.tokenizer.decode(o) for o in outputs]
        row = {"exact_match": float(np.mean([t == target for t, (_, target) in zip(texts, pairs)])), "loss": loss,
               "generate_s": round(seconds, 2), "decoder_bytes": (Path(path) / lm.bundle.manifest.graph("decoder").file).stat().st_size}
        if reference is None:
            reference = (outputs, loss)
        else:
            ref_out, ref_loss = reference
            row.update({"token_agreement": token_agreement(outputs, ref_out),
                        "sequences_identical": float(np.mean([x == y for x, y in zip(outputs, ref_out)])),
                        "loss_change": loss - ref_loss})
        results[name] = row
    return results


def _step_feeds(manifest: Manifest, past: int = 15, source: int = 16) -> dict[str, np.ndarray]:
    """One decoder step at batch 1 (1 new token after ``past`` cached, a ``source``-token input), from the specs."""
    model = manifest.extra["model"]
    rng = np.random.default_rng(2)
    feeds: dict[str, np.ndarray] = {}
    for spec in manifest.graph("decoder").inputs:
        fixed = [d for d in spec.shape[1:] if isinstance(d, int)]  # a static-shape graph's padded length
        if spec.name in ("decoder_input_ids", "input_ids"):
            feeds[spec.name] = np.full((1, 1), 5 % int(model["vocab_size"]), np.int64)
        elif spec.name == "cache_position":
            feeds[spec.name] = np.array([[past]], np.int64)
        elif spec.name == "encoder_attention_mask":
            feeds[spec.name] = _ones_then_padding(source, spec.shape[1])
        elif spec.name == "attention_mask":
            feeds[spec.name] = np.ones((1, past + 1), np.int64)
        elif spec.name == "position_ids":
            feeds[spec.name] = np.array([[past]], np.int64)
        else:
            length = spec.shape[2] if len(fixed) == 3 else past if spec.name.startswith("past") else source
            feeds[spec.name] = rng.standard_normal((1, model["heads"], length, model["head_dim"])).astype(np.float32)
    return feeds


def _ones_then_padding(used: int, length: int | str) -> np.ndarray:
    """A [1, length] mask of ``used`` ones then zeros (``length`` a name: a dynamic axis, no padding)."""
    mask = np.ones((1, length if isinstance(length, int) else used), np.int64)
    mask[:, used:] = 0
    return mask


def _step_ms(paths: dict[str, Path], feeds, threads: int, graph: Graph, rounds: int = 7, runs: int = 20) -> dict[str, float]:
    """Median ms of one run per file (each with ``graph``'s I/O specs), timed in interleaved rounds."""
    from edgekit.runtimes import load_file

    sessions = {name: load_file(path, threads=threads, inputs=graph.inputs, outputs=graph.outputs)
                for name, path in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for s in sessions.values():
        for _ in range(3):
            s.run(feeds)
    for _ in range(rounds):
        for name, s in sessions.items():
            start = time.perf_counter()
            for _ in range(runs):
                s.run(feeds)
            times[name].append((time.perf_counter() - start) * 1e3 / runs)
    return {name: float(np.median(t)) for name, t in times.items()}


def export_variant(fp32_dir: Path, out: Path, precision: str, *, min_agreement: float, threads: int, force: bool,
                   say: Callable[[str], None],
                   predict: Callable[[str, Path], list[dict[str, Any]]] = lambda graph, file: []) -> Manifest:
    """The SLM family's precision hook: the ``precision`` variant of the fp32 bundle at ``fp32_dir``, written
    to ``out`` with its token agreement, task score and decoder-step latency against fp32 in the manifest.
    Below ``min_agreement`` it raises ValidationError naming both numbers, and nothing is written.
    ``predict(graph, file)`` gives the target's latency entries for the variant's decoder file.

    Example:
        >>> export_variant(Path("fp32"), Path("int8"), "int8", min_agreement=0.99, threads=1, force=False,
        ...                say=print)   # doctest: +SKIP
    """
    import edgekit.runtimes as rt

    if precision not in VARIANTS:
        raise UsageError(f"--precision {precision}: language models export fp32, {' or '.join(VARIANTS)}")
    bundle = read_bundle(fp32_dir)
    manifest = bundle.manifest
    with BundleWriter(out, force=force) as stage:
        say(f"writing the {precision} decoder")
        graphs, info = _write_variant(bundle, stage.path, precision)
        variant_manifest = replace(manifest, precision=precision, graphs=graphs, files={})
        prompts, targets, what, new_tokens = task_prompts(manifest)
        say(f"measuring token agreement with fp32 on {what}")
        variant_lm = _open_staged(stage.path, variant_manifest, threads)
        record = {**info, "on": what, "min_token_agreement": min_agreement,
                  **agreement(rt.load(fp32_dir, threads=threads), variant_lm, prompts, targets, new_tokens)}
        _refuse_below(record, precision, min_agreement, targets)
        say("timing one decoder step against fp32")
        ms = _step_ms({"fp32": bundle.path / manifest.graph("decoder").file, precision: stage.path / graphs["decoder"].file},
                      _step_feeds(manifest), threads, manifest.graph("decoder"))
        record["decoder_step_ms"] = {"fp32": round(ms["fp32"], 4), precision: round(ms[precision], 4)}
        if "encoder" in graphs:
            graphs, record["encoder"] = _encoder_if_faster(bundle, stage.path, graphs, precision, threads, say)
            if record["encoder"]["kept"]:
                variant_manifest = replace(variant_manifest, graphs=graphs)
                say(f"measuring token agreement with fp32 again, {precision} encoder included")
                record.update(agreement(rt.load(fp32_dir, threads=threads), _open_staged(stage.path, variant_manifest, threads),
                                        prompts, targets, new_tokens))
                _refuse_below(record, precision, min_agreement, targets)
        latency = [_relabel(entry, precision, ms[precision]) for entry in manifest.latency
                   if entry.get("source") == "measured" and entry.get("target") == "host"]
        latency += predict("decoder", stage.path / graphs["decoder"].file)
        validation = {**manifest.validation, "precision": record}
        return stage.commit(replace(variant_manifest, validation=validation, latency=tuple(latency),
                                    provenance={**manifest.provenance, "quantization": info}))


def _refuse_below(record: dict[str, Any], precision: str, min_agreement: float, targets) -> None:
    if record["token_agreement"] >= min_agreement:
        return
    score = "" if targets is None else (f"; exact match {100 * record['exact_match_variant']:.1f}% vs fp32 "
                                        f"{100 * record['exact_match_fp32']:.1f}%")
    raise ValidationError(
        f"--precision {precision}: the {precision} model agrees with fp32 on {100 * record['token_agreement']:.2f}% "
        f"of greedy tokens, below the threshold {100 * min_agreement:.2f}% (--min-agreement){score}; nothing was written")


def _encoder_feeds(manifest: Manifest, source: int = 16) -> dict[str, np.ndarray]:
    vocab = int(manifest.extra["model"]["vocab_size"])
    mask = _ones_then_padding(source, manifest.graph("encoder").inputs[0].shape[1])
    ids = np.random.default_rng(3).integers(min(3, vocab - 1), vocab, size=mask.shape).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def _encoder_if_faster(bundle, stage: Path, graphs: dict[str, Graph], precision: str, threads: int,
                       say: Callable[[str], None]) -> tuple[dict[str, Graph], dict[str, Any]]:
    """The encoder's ``precision`` copy replaces the fp32 one when it runs faster here (16-token input, interleaved)."""
    encoder = graphs["encoder"]
    candidate = stage / f"encoder.{precision}{Path(encoder.file).suffix}"
    say(f"trying a {precision} encoder")
    info = _quantize_file(stage / encoder.file, candidate, precision)
    ms = _step_ms({"fp32": stage / encoder.file, precision: candidate}, _encoder_feeds(bundle.manifest), threads, encoder,
                  runs=5)
    record = {"kept": ms[precision] < ms["fp32"], "ms_16_tokens": {k: round(v, 4) for k, v in ms.items()}, **info}
    if not record["kept"]:
        candidate.unlink()
        return graphs, record
    (stage / encoder.file).unlink()
    return {**graphs, "encoder": Graph(candidate.name, encoder.inputs, encoder.outputs)}, record


def agreement_line(precision: str, record: dict[str, Any]) -> str:
    """The manifest's variant record in one line (``edgekit export`` and ``edgekit inspect`` print it).

    Example:
        >>> agreement_line("int8", {"token_agreement": 0.9983, "min_token_agreement": 0.99, "on": "200 prompts",
        ...                         "exact_match_fp32": 0.93, "exact_match_variant": 0.925})
        'int8 vs fp32: greedy token agreement 99.83% (threshold 99.00%), exact match 93.0% -> 92.5% (200 prompts)'
    """
    text = (f"{precision} vs fp32: greedy token agreement {100 * record['token_agreement']:.2f}% "
            f"(threshold {100 * record['min_token_agreement']:.2f}%)")
    if "exact_match_fp32" in record:
        text += f", exact match {100 * record['exact_match_fp32']:.1f}% -> {100 * record['exact_match_variant']:.1f}%"
    if "decoder_step_ms" in record:
        step = record["decoder_step_ms"]
        text += f", decoder step {step['fp32']:.3f} -> {step[precision]:.3f} ms"
    encoder = record.get("encoder")
    if encoder:
        ms = encoder["ms_16_tokens"]
        text += (f", {precision} encoder {'kept' if encoder['kept'] else 'not kept'} "
                 f"({ms['fp32']:.3f} -> {ms[precision]:.3f} ms at 16 tokens)")
    return text + f" ({record['on']})"


def _relabel(entry, precision: str, p50_ms: float) -> dict[str, Any]:
    """The fp32 bundle's host measurement, re-measured for the variant's decoder."""
    entry = dict(entry)
    ratio = p50_ms / entry["ms"] if entry.get("ms") else 1.0
    entry.update({"precision": precision, "ms": round(p50_ms, 4)})
    if entry.get("p90_ms"):
        entry["p90_ms"] = round(entry["p90_ms"] * ratio, 4)
    return entry


def _open_staged(path: Path, manifest: Manifest, threads: int):
    """An LM session over the staged (not yet committed) variant's graphs."""
    import importlib

    from edgekit.runtimes import _TASK_LOADERS
    from edgekit.runtimes.bundle import Bundle

    module_name, function_name = _TASK_LOADERS[manifest.task]
    return getattr(importlib.import_module(module_name), function_name)(Bundle(path, manifest), threads=threads)
