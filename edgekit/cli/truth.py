"""``edgekit truth add FILE``: your own (or newly published) device latencies; the published calibration refits from them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, table

__all__ = ["app", "register"]

app = typer.Typer(help="Published or measured device latencies that calibrate the target models.", no_args_is_help=True)


@app.command("add")
def add_command(
    file: Path = typer.Argument(..., help="Points as JSONL or CSV: target, unit, runtime, precision, model, ms "
                                          "[, resolution, batch, threads, source] (edgekit.targets.truth)."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where your points and refits live (default: the "
                                             "user cache, beside the latency store)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the points, keep them, and refit the calibration of every unit x runtime x precision they touch
    (over the published points and all of yours); later predictions there use the refit."""
    from edgekit.targets.fitted import tables_dir
    from edgekit.targets.published import add_user_points

    result = add_user_points(file, directory or tables_dir())

    def render() -> None:
        out.print(f"{result['added']} new point(s) of {result['read']} read kept in {result['points']}")
        for line in result["apart"]:
            out.print(f"shown apart, not fitted: {line}")
        for line in result["not_fitted"]:
            out.print(f"not fitted: {line}")
        rows = [[group, str(fit["points"]), ", ".join(f"{k} {v:.4g}" for k, v in fit["coefficients"].items()),
                 f"x{fit['median_error']:.2f}", "-" if fit["cv_median_error"] is None else f"x{fit['cv_median_error']:.2f}"]
                for group, fit in result["fits"].items()]
        if rows:
            out.print(table("refitted (target/unit/runtime/precision)", ["group", "n", "ms per", "median error",
                                                                         "cross-validated"], rows))
        out.print(f"refits saved to {result['fits_file']}")

    emit(result, as_json, render)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="truth")
