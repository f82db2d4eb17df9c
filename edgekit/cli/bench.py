"""``edgekit bench``: latency percentiles and throughput of a bundle on this machine.

One-graph models report p50/p90/p99 latency and inferences/s (samples/s with ``--batch``); generation
bundles (seq2seq, causal-lm) report time to first token and decode tokens/s of greedy generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import typer

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec, random_inputs

from .common import emit, out, table

__all__ = ["register", "random_feeds", "fixed_prompt"]

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


def fixed_prompt(lm: Any, length: int, batch: int = 1, seed: int = 0) -> list[list[int]]:
    """``batch`` copies of one seeded prompt of ``length`` ordinary token ids (above every special id)."""
    special = [int(i) for key, value in lm.generation.items() if key.endswith("token_id") and value is not None
               for i in (value if isinstance(value, (list, tuple)) else [value])]
    low = min(1 + max(special, default=-1), lm.vocab_size - 1)
    row = np.random.default_rng(seed).integers(low, lm.vocab_size, length).tolist()
    return [list(row) for _ in range(batch)]


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


def bench_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    runs: int = typer.Option(100, "--runs", "-n", help="Timed runs (generations, for a generation bundle)."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads (fixed, for repeatable numbers)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size fed (default 1, or the model's fixed batch)."),
    input_tokens: Optional[int] = typer.Option(None, "--input-tokens", help=f"Generation bundles: prompt length (default {_INPUT_TOKENS})."),
    new_tokens: Optional[int] = typer.Option(None, "--new-tokens", help=f"Generation bundles: tokens generated per run (default {_NEW_TOKENS})."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Time a model on this host: p50/p90/p99 and inferences/s, or first-token ms and tokens/s for a language model."""
    import edgekit.runtimes as rt
    from edgekit.runtimes.seq2seq import LMSession

    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
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
