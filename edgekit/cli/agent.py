"""``edgekit agent``: run the profiling agent on a device (needs only ``edgekit[ort]``)."""

from __future__ import annotations

from typing import Optional

import typer

__all__ = ["register"]


def agent_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface, no TLS)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", envvar="EDGEKIT_AGENT_TOKEN", help="Secret clients must send (or EDGEKIT_AGENT_TOKEN)."),
    max_body_mb: float = typer.Option(256.0, "--max-body-mb", help="Largest model accepted, in MB."),
    timeout: float = typer.Option(60.0, "--timeout", help="Per-request socket timeout in seconds."),
) -> None:
    """Serve GET /v1/facts and POST /v1/profile for 'edgekit profile --agent' (Ctrl-C stops)."""
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.agent import serve

    if not token or not token.strip():
        raise UsageError("the agent refuses to start without a token: pass --token T or set EDGEKIT_AGENT_TOKEN")
    serve(host, port, token=token, max_body_mb=max_body_mb, timeout_s=timeout)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent_command)
