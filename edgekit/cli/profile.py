"""``edgekit profile``: measure a model on this host or on a device through its agent, and store it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, progress, table, warn

__all__ = ["register"]

TOP_NODES = 15


def profile_command(
    model: Path = typer.Argument(..., help="Bundle directory or .onnx file."),
    target: str = typer.Option("host", "--target", "-t", help="Where to measure: host, or a device reached with --agent."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads (fixed, for repeatable numbers)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs first."),
    runs: int = typer.Option(50, "--runs", "-n", help="Timed runs."),
    per_node: bool = typer.Option(False, "--per-node", help="Also time every graph node (onnxruntime profiling)."),
    agent: Optional[str] = typer.Option(None, "--agent", help="URL of the device's agent (edgekit agent), e.g. http://rpi5:8765."),
    token: Optional[str] = typer.Option(None, "--token", envvar="EDGEKIT_AGENT_TOKEN", help="The agent's token."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the agent's token (instead of --token, which shows in ps)."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the agent."),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="Precision to store it under (default: the bundle's, else fp32)."),
    store_path: Optional[Path] = typer.Option(None, "--store", help="Latency store file (default: the user cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure a model (p50/p90/p99, throughput) and record it in the latency store."""
    from edgekit.runtimes.bundle import read_bundle
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets import load_target
    from edgekit.targets.profile import device_mismatch
    from edgekit.targets.store import LatencyStore

    resolved = load_target(target)
    target_name = resolved.name
    if agent is None and target_name != "host":
        raise UsageError(
            f"measuring on {target_name} needs the device's agent: run 'edgekit agent --token T' on the device, "
            "then pass --agent http://DEVICE:8765 --token T (or measure this machine with --target host)"
        )
    if agent is not None and target_name == "host":
        raise UsageError("--agent measures a device: give that device's --target (results are stored under it), not host")
    if token_file is not None:
        from edgekit.targets.agent_client import read_token

        token, _ = read_token(None, token_file)
    if agent is not None and not token:
        raise UsageError("--agent needs --token (or EDGEKIT_AGENT_TOKEN): the token the agent was started with")
    if precision is None:
        precision = read_bundle(model, verify=False).manifest.precision if model.is_dir() else "fp32"

    with progress(not as_json) as say:
        if agent is None:
            from edgekit.targets.profile import profile_model

            say(f"measuring {model} on this host")
            result = profile_model(model, threads=threads, warmup=warmup, runs=runs, per_node=per_node)
            source = "measured on host"
        else:
            from edgekit.targets.agent_client import AgentClient
            from edgekit.targets.profile import model_file

            file = model_file(model)
            say(f"sending {file.name} to {agent}")
            result = AgentClient(agent, token, timeout).profile(file, threads, warmup, runs, per_node)
            source = f"measured on {target_name} via agent {agent}"

    mismatch = device_mismatch(resolved, result.device) if agent is not None else None
    if mismatch is not None:
        warn(f"measured on {target_name} through {agent}, but {mismatch}: check --agent and --target")
    record = result.to_record(target_name, precision, {"model": str(model), "source": source, "device_mismatch": mismatch})
    with LatencyStore(store_path) as store:
        store.record(record)
        stored_in = store.path

    data = {"model": str(model), "target": target_name, "precision": precision, "source": source,
            "store": str(stored_in), **result.to_json(), "device_mismatch": mismatch}

    def render() -> None:
        stats = result.stats
        out.print(table(f"{model} ({result.runtime} {result.runtime_version}, {result.threads} thread(s), {precision})",
                        ["p50 ms", "p90 ms", "p99 ms", "mean ms", stats.throughput_unit, "runs"],
                        [[f"{stats.p50_ms:.3f}", f"{stats.p90_ms:.3f}", f"{stats.p99_ms:.3f}", f"{stats.mean_ms:.3f}",
                          f"{stats.throughput:.1f}", stats.runs]]))
        if result.per_node:
            total = sum(n.ms for n in result.per_node) or 1.0
            rows = [[n.name, n.op_type, f"{n.ms:.4f}", f"{100 * n.ms / total:.1f}%"] for n in result.per_node[:TOP_NODES]]
            shown = min(TOP_NODES, len(result.per_node))
            out.print(table(f"slowest {shown} of {len(result.per_node)} nodes (median kernel time)",
                            ["node", "op", "ms", "share"], rows))
        machine = result.device
        on = f" ({machine['machine']}, {machine['cpu_model']}, {machine['logical_cores']} cores)" if machine else ""
        out.print(f"{source}{on}; stored in {stored_in} (target {target_name}, key {result.model_sha256[:12]}...)")

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)
