"""``edgekit compress``: prune / sparsify / fine-tune / quantize a segmenter, measure every step, write
the last one as a bundle (see :mod:`edgekit.compress.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, number_range, out, progress, table

__all__ = ["register"]


def compress_command(
    model: Optional[str] = typer.Option("seg-simple", "--model", "-m", help="seg-simple (its own data), or path/to/file.py:factory / package.module:factory with --eval-data."),
    prune: Optional[float] = typer.Option(None, "--prune", help="Structured pruning: fraction of MACs to remove, in (0, 1), e.g. 0.5."),
    allocation: Optional[str] = typer.Option(None, "--allocation", help="Per-layer rates: uniform | sensitivity (measured per layer group); default: sensitivity (a SegFormer: uniform)."),
    sparsity: Optional[str] = typer.Option(None, "--sparsity", help="N:M semi-structured sparsity, e.g. 2:4 (masks kept during fine-tuning)."),
    magnitude: Optional[float] = typer.Option(None, "--magnitude", help="Gradual magnitude pruning to this weight sparsity, in (0, 1), on the cubic schedule."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8 | fp16: the pipeline's variant of the compressed model."),
    finetune_steps: Optional[int] = typer.Option(None, "--finetune-steps", help="Distillation fine-tuning steps after pruning / sparsity (0: none; default 100, none after a shipped level)."),
    from_dense: bool = typer.Option(False, "--from-dense", help="Prune and fine-tune here even when a shipped, GPU-fine-tuned level of a built-in matches."),
    max_drop: float = typer.Option(1.0, "--max-drop", callback=number_range(0), help="Fail if the written model loses more mIoU points than this vs dense."),
    allow_drop: bool = typer.Option(False, "--allow-drop", help="Write the bundle even past --max-drop."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help=".npz with images (N, C, H, W) float32 and labels (N, H, W) int: mIoU of every step."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help=".npz with images: int8 calibration."),
    train_data: Optional[Path] = typer.Option(None, "--train-data", help=".npz with images and labels: fine-tuning."),
    target: str = typer.Option("host", "--target", "-t", help="Target name or alias (decides the format, as edgekit export does)."),
    target_file: Optional[Path] = typer.Option(None, "--target-file", help="Your own target profile (TOML)."),
    bench_runs: int = typer.Option(20, "--bench-runs", help="Timed runs per step on this host (1 thread)."),
    seed: int = typer.Option(0, "--seed", help="Seed of fine-tuning and data."),
    out_dir: Path = typer.Option(Path("edgekit-bundle"), "--out", "-o", help="Bundle directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace --out even if it is not an edgekit bundle (its files are lost)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Compress a model, measure each step (MACs, params, size, mIoU, latency) and write the bundle."""
    from edgekit.compress.run import CompressRequest, compress

    request = CompressRequest(
        out=out_dir, model=model, target=target, target_file=target_file, prune=prune,
        sparsity=sparsity, magnitude=magnitude, quantize=quantize, finetune_steps=finetune_steps, max_drop=max_drop,
        allow_drop=allow_drop, eval_data=eval_data, calib_data=calib_data, train_data=train_data, runs=bench_runs,
        seed=seed, force=force, from_dense=from_dense, **({"allocation": allocation} if allocation else {}))
    with progress(not as_json) as say:
        report = compress(request, progress=say)
    from edgekit.runtimes.bundle import read_bundle

    manifest = read_bundle(out_dir).manifest

    def render() -> None:
        from edgekit.compress.report import COLUMNS

        out.print(table(f"bundle {out_dir}  ({manifest.name} -> {manifest.target}, {manifest.format} {manifest.precision})",
                        COLUMNS, report.table()))
        change = f"{abs(report.drop_points):.2f} points {'lost' if report.drop_points > 0 else 'gained'}"
        out.print(f"mIoU {100 * report.dense.miou:.2f} (dense) -> {100 * report.final.miou:.2f} ({report.final.step}): "
                  f"{change} (--max-drop {request.max_drop:g}) on {report.data['eval']}", markup=False)
        out.print("host ms: measured here in the bundle's runtime, 1 thread, median; target ms: modeled by the "
                  "target's latency model ('-': no unit of the target runs the file)", markup=False)

    emit({"bundle": str(out_dir), "compression": manifest.extra["compression"]}, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("compress")(compress_command)
