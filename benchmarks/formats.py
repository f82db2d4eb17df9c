"""ONNX vs TFLite at fp32 / fp16 / int8 on this host, 1 thread: latency, size and accuracy, and whether
``edgekit select --target host`` would pick the fastest.

Models: the shipped OFA subnet (``--model ofa-mbv3``, default subnet; accuracy on its 512 held-out shape
images) and MobileNetV3-Small (random weights: latency and size only). Each file is written by the
format's own exporter (exporters/onnx.py, exporters/tflite.py) and runs in the format's runtime backend
(onnxruntime; ai-edge-litert with XNNPACK, its default, and without it); int8 is calibrated on 64 OFA-family images (the family's data
for OFA; the same synthetic shape images at 224 px for MobileNetV3-Small, which has no data). All six files
of a model are timed in interleaved rounds (batch 1, warmed up). The shipped encoder-decoder SLM
(``slm-encdec``) is exported as six bundles through ``edgekit export`` (ONNX with dynamic shapes; TFLite with
static shapes: the source padded to 128 tokens, a 128-slot KV cache), timed as greedy generation (16 input,
16 new tokens, interleaved), with exact match on 200 held-out letters examples and greedy-token agreement
with its format's fp32 bundle as the export measured it.

Example:
    python benchmarks/formats.py --runs 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table, write_result  # noqa: E402

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")


def _variants(source, work: Path, calibration: list[dict]) -> dict[tuple[str, str], tuple[Path, Any]]:
    """(format, precision) -> (file, exporter), each fp32 file validated against torch first."""
    from edgekit.exporters.base import ExportOptions, exporter_for

    files = {}
    for fmt in FORMATS:
        exporter = exporter_for(fmt)
        fp32 = work / f"{fmt}-fp32{exporter.record.suffix}"
        artifact = exporter.export(source.graph, fp32, ExportOptions())
        exporter.validate(artifact, source.graph, atol=1e-4, rtol=1e-3)
        files[(fmt, "fp32")] = (fp32, exporter, artifact.inputs)
        for precision in PRECISIONS[1:]:
            path = work / f"{fmt}-{precision}{exporter.record.suffix}"
            exporter.write_variant(fp32, path, precision, artifact.inputs, calibration if precision == "int8" else ())
            files[(fmt, precision)] = (path, exporter, artifact.inputs)
    return files


def _measure(name: str, source, calibration: list[dict], held_out, runs: int, warmup: int) -> list[dict[str, Any]]:
    from edgekit.exporters.accuracy import top1
    from edgekit.runtimes.spec import random_inputs
    from edgekit.targets.measure import measure_interleaved

    with tempfile.TemporaryDirectory(prefix="edgekit-formats-") as tmp:
        files = _variants(source, Path(tmp), calibration)
        sessions = {(*key, "default"): exporter.validation_session(path, inputs, threads=1)
                    for key, (path, exporter, inputs) in files.items()}
        for (fmt, precision), (path, exporter, inputs) in files.items():  # LiteRT's built-in kernels, no XNNPACK
            if fmt == "tflite":
                sessions[(fmt, precision, "no-xnnpack")] = exporter.validation_session(path, inputs, threads=1, xnnpack=False)
        feeds = random_inputs(next(iter(files.values()))[2], source.graph.trials[0], seed=0)
        stats = measure_interleaved({key: (lambda s=s: s.run(feeds)) for key, s in sessions.items()}, warmup=warmup, runs=runs)
        rows = []
        for (fmt, precision, kernels), session in sessions.items():
            accuracy = None
            if held_out is not None:
                samples, labels = held_out
                accuracy = top1([session.run(dict(feed)) for feed in samples], labels)
            runtime = session.backend + (" (XNNPACK)" if fmt == "tflite" and kernels == "default" else
                                         " (built-in kernels)" if kernels == "no-xnnpack" else "")
            key = (fmt, precision, kernels)
            rows.append({"model": name, "format": fmt, "precision": precision, "runtime": runtime,
                         "bytes": files[(fmt, precision)][0].stat().st_size, "p50_ms": stats[key].p50_ms,
                         "p90_ms": stats[key].p90_ms, "top1": accuracy})
    return rows


def _slm_rows(work: Path, runs: int) -> list[dict[str, Any]]:
    """The shipped SLM in both formats at every precision: size, first token, decode speed, task score."""
    import edgekit.runtimes as rt
    from edgekit.models.registry import ModelRequest
    from edgekit.models.slm.quantize import task_prompts
    from edgekit.pipeline import ExportRequest, OutputConfig, export_bundle
    from edgekit.targets.measure import measure_generation_interleaved

    bundles = {}
    for fmt in FORMATS:
        for precision in PRECISIONS:
            out = work / f"slm-{fmt}-{precision}"
            export_bundle(ExportRequest(out=out, model=ModelRequest("slm-encdec"),
                                        output=OutputConfig(format=fmt, precision=precision)))
            bundles[(fmt, precision)] = out
    sessions = {key: rt.load(path, threads=1) for key, path in bundles.items()}
    prompt = [list(range(40, 56))]
    stats = measure_generation_interleaved(sessions, prompt, 16, warmup=3, runs=max(5, runs // 4))
    prompts, targets, _, new_tokens = task_prompts(next(iter(sessions.values())).bundle.manifest)
    rows = []
    for (fmt, precision), lm in sessions.items():
        texts = [lm.tokenizer.decode(row) for row in lm.completions(lm.generate(prompts, max_new_tokens=new_tokens), prompts)]
        manifest = lm.bundle.manifest
        agreement = manifest.validation.get("precision", {}).get("token_agreement")
        rows.append({"model": "slm-encdec (shipped)", "format": fmt, "precision": precision, "runtime": lm.decoder.backend,
                     "bytes": sum(int(manifest.files[g.file]["bytes"]) for g in manifest.graphs.values()),
                     "first_token_ms": stats[(fmt, precision)].first_token_ms[0],
                     "decode_tokens_per_s": stats[(fmt, precision)].decode_tokens_per_s[0],
                     "exact_match": float(np.mean([t == g for t, g in zip(texts, targets)])),
                     "token_agreement_vs_fp32": 1.0 if precision == "fp32" else agreement})
    return rows


def _selection(budget_ms: float) -> dict[str, Any]:
    """What ``edgekit select --target host --budget-ms B`` picks (format, precision, its latency source)."""
    from edgekit.pipeline import resolve_target
    from edgekit.search.run import run_selection, selection_json

    target = resolve_target("host", None)
    found, selection = run_selection("ofa-mbv3", target, budget_ms, threads=1, writable_only=True)
    best = selection_json(found, target, selection)["best"]
    return {k: best[k] for k in ("format", "precision", "unit", "latency_ms", "latency_source")}


def main(argv: list[str] | None = None) -> int:
    from edgekit.models.ofa import calibration_images
    from edgekit.models.registry import ModelRequest, resolve_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)

    ofa = resolve_model(ModelRequest("ofa-mbv3"))
    mobilenet = resolve_model(ModelRequest("mobilenet-v3-small"))
    spec = mobilenet.graph.inputs[0]
    mobilenet_calibration = [{spec.name: image[None]} for image in calibration_images(64, 224)]
    rows = _measure("ofa-mbv3 (shipped subnet)", ofa, ofa.data.int8_calibration(64), ofa.data.held_out(), args.runs, args.warmup)
    rows += _measure("mobilenet-v3-small (random weights)", mobilenet, mobilenet_calibration, None, args.runs, args.warmup)

    fastest = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        best = min(mine, key=lambda r: r["p50_ms"])
        fastest[model] = {"format": best["format"], "precision": best["precision"], "runtime": best["runtime"],
                          "p50_ms": best["p50_ms"]}
    ofa_rows = [r for r in rows if r["model"].startswith("ofa")]
    budget = 1.5 * max(r["p50_ms"] for r in ofa_rows)
    selected = _selection(budget)
    ofa_best = fastest[ofa_rows[0]["model"]]
    agrees = (selected["format"], selected["precision"]) == (ofa_best["format"], ofa_best["precision"])

    print_table("ONNX vs TFLite on this host (1 thread, batch 1, interleaved; measured; shared 2-core machine, noisy)",
                ["model", "format", "precision", "runtime", "size KB", "p50 ms", "p90 ms", "held-out top-1"],
                [[r["model"], r["format"], r["precision"], r["runtime"], f"{r['bytes'] / 1024:.0f}", f"{r['p50_ms']:.3f}",
                  f"{r['p90_ms']:.3f}", "-" if r["top1"] is None else f"{100 * r['top1']:.1f}%"] for r in rows])
    for model, best in fastest.items():
        print(f"fastest here for {model}: {best['format']} {best['precision']} in {best['runtime']} ({best['p50_ms']:.3f} ms)")
    print(f"edgekit select --target host --budget-ms {budget:.1f} (ofa-mbv3) picks {selected['format']} "
          f"{selected['precision']} ({selected['latency_source']} {selected['latency_ms']:.3f} ms): "
          f"{'the same' if agrees else 'NOT the fastest measured here'}")
    with tempfile.TemporaryDirectory(prefix="edgekit-formats-slm-") as tmp:
        slm = _slm_rows(Path(tmp), args.runs)
    print_table("The shipped SLM: ONNX (dynamic shapes) vs TFLite (static: 128-token source, 128-slot cache); greedy, "
                "16 input + 16 new tokens, 1 thread, interleaved; measured",
                ["format", "precision", "runtime", "size KB", "first token ms", "decode tokens/s",
                 "exact match (200 held-out)", "tokens = fp32"],
                [[r["format"], r["precision"], r["runtime"], f"{r['bytes'] / 1024:.0f}", f"{r['first_token_ms']:.3f}",
                  f"{r['decode_tokens_per_s']:.0f}", f"{100 * r['exact_match']:.1f}%",
                  "-" if r["token_agreement_vs_fp32"] is None else f"{100 * r['token_agreement_vs_fp32']:.2f}%"] for r in slm])
    best_slm = max(slm, key=lambda r: r["decode_tokens_per_s"])
    print(f"fastest decode here for the SLM: {best_slm['format']} {best_slm['precision']} "
          f"({best_slm['decode_tokens_per_s']:.0f} tokens/s)")
    path = write_result("formats", {"runs": args.runs, "warmup": args.warmup, "threads": 1, "rows": rows,
                                    "fastest": fastest, "selection": {**selected, "budget_ms": budget,
                                                                      "picks_the_fastest": agrees},
                                    "slm": slm})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
