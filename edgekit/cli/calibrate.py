"""``edgekit calibrate``: fit a target's per-op latency model to measurements of the calibration zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, progress, table

__all__ = ["register"]


def calibrate_command(
    target: str = typer.Option("host", "--target", "-t", help="Target name or alias."),
    unit: Optional[str] = typer.Option(None, "--unit", help="Unit to calibrate (default: the one running onnxruntime)."),
    precision: str = typer.Option("fp32", "--precision", "-p", help="fp32 | fp16 | int8."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads the predictions are for."),
    runs: int = typer.Option(40, "--runs", help="Timed runs per model."),
    agent: Optional[str] = typer.Option(None, "--agent", help="URL of an edgekit agent on the device."),
    token: Optional[str] = typer.Option(None, "--token", envvar="EDGEKIT_AGENT_TOKEN", help="The agent's token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the agent's token (instead of --token, which shows in ps)."),
    store_path: Optional[Path] = typer.Option(None, "--store", help="Latency store (default: the user cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure the calibration zoo (varied networks, edgekit/calibration_zoo.py) on the target, fit per-op-kind costs, save them.

    Later predictions for this target, unit, precision and thread count are then labelled
    'calibrated' instead of 'modeled'.
    """
    from edgekit.pipeline import resolve_target
    from edgekit.profiling import calibrate_target
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.predictor import calibration_file, tables_dir
    from edgekit.targets.store import LatencyStore

    resolved = resolve_target(target, None)
    client = None
    if token_file is not None:
        from edgekit.targets.agent_client import read_token

        token, _ = read_token(None, token_file)
    if agent is not None:
        if not token:
            raise UsageError("--agent needs --token (or EDGEKIT_AGENT_TOKEN)")
        from edgekit.targets.agent_client import AgentClient

        client = AgentClient(agent, token)
    with LatencyStore(store_path) as store, progress(not as_json) as say:
        run = calibrate_target(resolved, unit=unit, precision=precision, threads=threads, runs=runs, agent=client,
                               store=store, progress=say)
        directory = Path(store.path).parent if store_path else tables_dir()
    path = calibration_file(directory, resolved.name, run.calibration.unit, precision, threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    run.calibration.save(path)
    data = {"calibration": run.calibration.to_json(), "file": str(path),
            "leave_one_out_median_abs_pct_error": run.loo_median_abs_pct_error,
            "measured_ms": dict(run.measured)}

    def render() -> None:
        cal = run.calibration
        out.print(table(f"calibration of {cal.target} / {cal.unit} / {precision} / {threads} thread(s)",
                        ["coefficient", "value"], [[k, f"{v:.4g}"] for k, v in cal.coefficients.items()]))
        out.print(f"{cal.samples} models measured; median error {cal.train_median_abs_pct_error:.1f}% fitted, "
                  f"{run.loo_median_abs_pct_error:.1f}% leave-one-out; saved {path}")

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
