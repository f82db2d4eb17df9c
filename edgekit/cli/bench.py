"""``edgekit bench``: latency percentiles and throughput of a bundle on this machine.

One-graph models report p50/p90/p99 latency and inferences/s (samples/s with ``--batch``); generation
bundles (seq2seq, causal-lm) report time to first token and decode tokens/s of greedy generation.
``--formats all`` times every format of a bundle (``export --format all``) whose runtime is installed here,
side by side and interleaved, with size, agreement with the first format on the same inputs, and the parity
and held-out accuracy recorded at export; it lists the formats and precisions the bundle does not hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import typer

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec, random_inputs
from edgekit.targets.measure import fixed_prompt

from .common import emit, out, table

__all__ = ["register", "random_feeds"]

_INPUT_TOKENS, _NEW_TOKENS = 16, 16


def random_feeds(inputs: Sequence[TensorSpec], batch: int | None, sizes: Mapping[str, int] | None = None,
                 seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    """Seeded random feeds: named axes at ``sizes`` (a bundle's example sizes; 1 when absent), the first axis
    at ``batch`` when given. Returns the feeds and the batch actually fed; a fixed first axis other than
    ``batch`` is a UsageError.

    Example:
        >>> feeds, fed = random_feeds([TensorSpec("x", ("batch", 3, "height"))], 4, {"height": 8})
        >>> feeds["x"].shape, fed
        ((4, 3, 8), 4)
        >>> random_feeds([TensorSpec("x", (2, 3))], None)[1]
        2
    """
    sizes = dict(sizes or {})
    for spec in inputs:
        lead = spec.shape[0] if spec.shape else None
        if batch is not None and isinstance(lead, int) and lead != batch:
            raise UsageError(
                f"--batch {batch}: input {spec.name!r} has a fixed batch of {lead} (shape {spec.shape_str()}); "
                "drop --batch or re-export the model with a dynamic batch axis"
            )
        if isinstance(lead, str) and batch is not None:
            sizes[lead] = batch
    feeds = random_inputs(inputs, sizes, seed=seed)
    fed = next((array.shape[0] for array in feeds.values() if array.ndim), 1)
    return feeds, int(fed)


def _bench_graph(model: Path, session: Any, batch: int | None, warmup: int, runs: int, threads: int, as_json: bool) -> None:
    from edgekit.targets.measure import measure_latency
    from edgekit.targets.profile import example_sizes

    feeds, fed = random_feeds(session.inputs, batch, example_sizes(model))
    stats = measure_latency(session, feeds, warmup=warmup, runs=runs, batch=fed)
    data = {"model": str(model), "backend": session.backend, "threads": threads,
            "inputs": {name: list(array.shape) for name, array in feeds.items()}, **stats.to_json()}

    def render() -> None:
        out.print(table(f"{model} on this host ({session.backend}, {threads} thread(s), batch {fed}; measured)",
                        ["p50 ms", "p90 ms", "p99 ms", "mean ms", stats.throughput_unit, "runs"],
                        [[f"{stats.p50_ms:.3f}", f"{stats.p90_ms:.3f}", f"{stats.p99_ms:.3f}", f"{stats.mean_ms:.3f}",
                          f"{stats.throughput:.1f}", stats.runs]]))

    emit(data, as_json, render)


def _bench_generation(model: Path, lm: Any, batch: int, input_tokens: int, new_tokens: int, warmup: int, runs: int,
                      threads: int, as_json: bool) -> None:
    from edgekit.targets.measure import measure_generation

    if input_tokens < 1:
        raise UsageError(f"--input-tokens must be >= 1, got {input_tokens}")
    stats = measure_generation(lm, fixed_prompt(lm, input_tokens, batch), new_tokens, warmup=warmup, runs=runs)
    data = {"model": str(model), "backend": lm.backend, "task": lm.bundle.manifest.task, "threads": threads,
            **stats.to_json()}

    def render() -> None:
        title = (f"{model} on this host ({lm.backend}, {threads} thread(s); {stats.decoding}, batch {stats.batch}, "
                 f"{stats.input_tokens} input tokens, {stats.new_tokens} new tokens, {stats.runs} runs; measured)")
        rows = [["first token", *(f"{v:.3f} ms" for v in stats.first_token_ms)],
                ["decode step", *(f"{v:.3f} ms/token" for v in stats.decode_ms_per_token)],
                ["decode speed", *(f"{v:.1f} tokens/s" for v in stats.decode_tokens_per_s)],
                ["whole generation", *(f"{v:.3f} ms" for v in stats.total_ms)]]
        out.print(table(title, ["", "p50", "p90"], rows))

    emit(data, as_json, render)


def _worst(errors: Any) -> float | None:
    """The largest of a parity report's per-output errors (a number, a dict by output, or None)."""
    if isinstance(errors, Mapping):
        return max((float(v) for v in errors.values()), default=None)
    return None if errors is None else float(errors)


def format_rows(model: Path, warmup: int, runs: int, threads: int, seed: int = 0) -> dict[str, Any]:
    """One row per format of the bundle at ``model`` whose runtime is installed here (timed interleaved at
    ``threads``), the formats it holds that cannot run here, and the format x precision pairs it lacks."""
    import edgekit.runtimes as rt
    from edgekit.runtimes.bundle import read_bundle
    from edgekit.runtimes.formats import find_format, missing_modules
    from edgekit.targets.measure import measure_interleaved

    if not model.is_dir():
        raise UsageError(f"--formats all: {model} is a model file; it takes a bundle directory")
    manifest = read_bundle(model).manifest
    sessions, rows, not_here = {}, [], []
    for fmt in manifest.format_names:
        record = find_format(fmt)
        missing = missing_modules(record.runtime_modules) if record is not None else (fmt,)
        if missing:
            not_here.append({"format": fmt, "missing": list(missing)})
            continue
        sessions[fmt] = rt.load(model, format=fmt, threads=threads)
    if not sessions:
        raise UsageError(f"--formats all: no runtime of {list(manifest.format_names)} is installed here ({not_here})")
    held = {(fmt, manifest.for_format(fmt).precision) for fmt in manifest.format_names}
    lacking = [{"format": fmt, "precision": p, "make": f"edgekit export ... --format {fmt} --precision {p}"}
               for fmt in manifest.format_names if (record := find_format(fmt)) is not None
               for p in record.precisions if (fmt, p) not in held]
    common = {"model": str(model), "threads": threads, "runs": runs, "source": "measured, interleaved",
              "not_runnable_here": not_here, "not_in_bundle": lacking}
    if manifest.task in ("seq2seq", "causal-lm"):
        return {**common, "task": manifest.task, "rows": _generation_rows(manifest, sessions, warmup, runs, seed)}
    first = next(iter(sessions.values()))
    feeds, _ = random_feeds(first.inputs, None, manifest.example_sizes, seed=seed)
    outputs = {fmt: session.run(feeds) for fmt, session in sessions.items()}
    reference = next(iter(outputs))
    stats = measure_interleaved({fmt: (lambda s=s: s.run(feeds)) for fmt, s in sessions.items()}, warmup=warmup, runs=runs)
    for fmt, session in sessions.items():
        view = manifest.for_format(fmt)
        validation = view.validation
        variant = validation.get("precision", {}).get("vs_fp32", {})
        accuracy = validation.get("accuracy", {}).get("exported", {})
        diff = max(float(np.max(np.abs(np.asarray(outputs[fmt][k], np.float64) - np.asarray(v, np.float64))))
                   for k, v in outputs[reference].items())
        rows.append({
            "format": fmt, "precision": view.precision, "runtime": session.backend,
            "bytes": sum(int(manifest.files[g.file]["bytes"]) for g in view.graphs.values()),
            "p50_ms": stats[fmt].p50_ms, "p90_ms": stats[fmt].p90_ms,
            "max_abs_diff_vs": {"format": reference, "value": diff},
            "parity_vs_torch_max_abs": _worst(validation.get("max_abs_error")) if view.precision == "fp32" else None,
            "vs_fp32": {k: variant.get(k) for k in ("mean_rel_error", "top1_agreement")} if variant else None,
            "top1": accuracy.get("top1"), "miou": accuracy.get("miou"),  # a segmenter's held-out score is mIoU
            "accuracy_data": validation.get("accuracy", {}).get("data"),
        })
    return {**common, "rows": rows}


_AGREEMENT_PROMPTS = 8


def _generation_rows(manifest: Any, sessions: Mapping[str, Any], warmup: int, runs: int, seed: int) -> list[dict]:
    """Generation bundles: first-token ms and decode tokens/s of each format (greedy, timed interleaved), and
    how many of the greedy tokens on seeded prompts equal the first format's."""
    from edgekit.targets.measure import measure_generation_interleaved

    first = next(iter(sessions.values()))
    prompt = fixed_prompt(first, _INPUT_TOKENS, seed=seed)
    stats = measure_generation_interleaved(sessions, prompt, _NEW_TOKENS, warmup=min(warmup, 3), runs=runs)
    prompts = [fixed_prompt(first, _INPUT_TOKENS, seed=seed + 1 + i)[0] for i in range(_AGREEMENT_PROMPTS)]
    tokens = {fmt: np.asarray(lm.generate(prompts, max_new_tokens=_NEW_TOKENS)) for fmt, lm in sessions.items()}
    reference = next(iter(tokens))
    rows = []
    for fmt, lm in sessions.items():
        view, same = manifest.for_format(fmt), tokens[fmt].shape == tokens[reference].shape
        rows.append({
            "format": fmt, "precision": view.precision, "runtime": lm.decoder.backend,
            "bytes": sum(int(manifest.files[g.file]["bytes"]) for g in view.graphs.values()),
            "first_token_ms_p50": stats[fmt].first_token_ms[0], "decode_tokens_per_s_p50": stats[fmt].decode_tokens_per_s[0],
            "token_agreement_vs": {"format": reference, "value": float(np.mean(tokens[fmt] == tokens[reference])) if same else 0.0,
                                   "prompts": len(prompts)},
            "parity_vs_torch_max_abs": _worst(view.validation.get("max_abs_error")) if view.precision == "fp32" else None,
        })
    return rows


def _bench_formats(model: Path, warmup: int, runs: int, threads: int, as_json: bool) -> None:
    data = format_rows(model, warmup, runs, threads)

    def render() -> None:
        def pct(value: Any) -> str:
            return "-" if value is None else f"{100 * value:.1f}%"

        if "task" in data:
            _render_generation(model, data, threads, runs)
            return
        rows = [[r["format"], r["precision"], r["runtime"], f"{r['bytes'] / 1024:.1f} KB", f"{r['p50_ms']:.3f}",
                 f"{r['p90_ms']:.3f}", f"{r['max_abs_diff_vs']['value']:.2e}",
                 "-" if r["parity_vs_torch_max_abs"] is None else f"{r['parity_vs_torch_max_abs']:.1e}",
                 "-" if not r["vs_fp32"] else pct(r["vs_fp32"]["top1_agreement"]), pct(r["top1"] if r["top1"] is not None else r["miou"])]
                for r in data["rows"]]
        first = data["rows"][0]["format"]
        out.print(table(f"{model}: every format here ({threads} thread(s), {runs} interleaved runs; measured)",
                        ["format", "precision", "runtime", "size", "p50 ms", "p90 ms", f"max |diff| vs {first}",
                         "parity vs torch", "top-1 agreement vs fp32", "held-out top-1 / mIoU"], rows))
        _render_missing(data)

    emit(data, as_json, render)


def _render_generation(model: Path, data: Mapping[str, Any], threads: int, runs: int) -> None:
    rows = [[r["format"], r["precision"], r["runtime"], f"{r['bytes'] / 1024:.1f} KB", f"{r['first_token_ms_p50']:.3f}",
             f"{r['decode_tokens_per_s_p50']:.1f}", f"{100 * r['token_agreement_vs']['value']:.1f}%",
             "-" if r["parity_vs_torch_max_abs"] is None else f"{r['parity_vs_torch_max_abs']:.1e}"]
            for r in data["rows"]]
    first = data["rows"][0]["format"]
    out.print(table(f"{model}: every format here ({threads} thread(s), greedy, {_INPUT_TOKENS} input tokens, "
                    f"{_NEW_TOKENS} new tokens, {runs} interleaved runs; measured)",
                    ["format", "precision", "runtime", "size", "first token ms p50", "decode tokens/s p50",
                     f"tokens equal to {first}", "parity vs torch"], rows))
    _render_missing(data)


def _render_missing(data: Mapping[str, Any]) -> None:
    for item in data["not_runnable_here"]:
        out.print(f"{item['format']}: not run here (missing {', '.join(item['missing'])})")
    if data["not_in_bundle"]:
        out.print("not in the bundle: " + ", ".join(f"{i['format']} {i['precision']}" for i in data["not_in_bundle"])
                  + " (export them with --format F --precision P)")


def bench_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    runs: int = typer.Option(100, "--runs", "-n", help="Timed runs (generations, for a generation bundle)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads (fixed, for repeatable numbers)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size fed (default 1, or the model's fixed batch)."),
    input_tokens: Optional[int] = typer.Option(None, "--input-tokens", help=f"Generation bundles: prompt length (default {_INPUT_TOKENS})."),
    new_tokens: Optional[int] = typer.Option(None, "--new-tokens", help=f"Generation bundles: tokens generated per run (default {_NEW_TOKENS})."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    formats: Optional[str] = typer.Option(None, "--formats", help="all: every format of the bundle whose runtime is installed, side by side."),
) -> None:
    """Time a model on this host: p50/p90/p99 and inferences/s, or first-token ms and tokens/s for a language model."""
    import edgekit.runtimes as rt
    from edgekit.runtimes.seq2seq import LMSession

    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if formats is not None:
        if formats != "all":
            raise UsageError(f"--formats {formats!r}: the one value is 'all'")
        _bench_formats(model, warmup, runs, threads, as_json)
        return
    session = rt.load(model, threads=threads)
    if isinstance(session, LMSession):
        _bench_generation(model, session, batch or 1, _INPUT_TOKENS if input_tokens is None else input_tokens,
                          _NEW_TOKENS if new_tokens is None else new_tokens, warmup, runs, threads, as_json)
        return
    given = "--input-tokens" if input_tokens is not None else "--new-tokens" if new_tokens is not None else None
    if given:
        raise UsageError(f"{given} applies to generation bundles (seq2seq, causal-lm); {model} is a one-graph model")
    _bench_graph(model, session, batch, warmup, runs, threads, as_json)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
