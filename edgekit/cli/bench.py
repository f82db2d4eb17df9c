"""``edgekit bench``: latency percentiles and throughput of a bundle on this machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from .common import emit, out, table

__all__ = ["register"]


def bench_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    runs: int = typer.Option(100, "--runs", "-n", help="Timed runs."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads (fixed, for repeatable numbers)."),
    batch: int = typer.Option(1, "--batch", help="Size of every dynamic axis in the random inputs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Time a model on random inputs: p50/p90/p99 and throughput (measured on this host)."""
    import edgekit.runtimes as rt
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.measure import measure_latency

    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    session = rt.load(model, threads=threads)
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        shape = spec.concrete({}, default=batch)
        feeds[spec.name] = (rng.standard_normal(shape) if spec.dtype.startswith("float") else rng.integers(0, 2, shape)).astype(spec.dtype)
    stats = measure_latency(session, feeds, warmup=warmup, runs=runs, batch=batch)
    data = {"model": str(model), "backend": session.backend, "threads": threads, **stats.to_json()}

    def render() -> None:
        out.print(table(f"{model} on this host ({session.backend}, {threads} thread(s), batch {batch}; measured)",
                        ["p50 ms", "p90 ms", "p99 ms", "mean ms", "throughput/s", "runs"],
                        [[f"{stats.p50_ms:.3f}", f"{stats.p90_ms:.3f}", f"{stats.p99_ms:.3f}", f"{stats.mean_ms:.3f}",
                          f"{stats.throughput:.1f}", stats.runs]]))

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
