"""``edgekit agent``: run the profiling agent on a device (needs only ``edgekit[ort]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def agent_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface, no TLS)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the secret clients must send (chmod 600)."),
    token: Optional[str] = typer.Option(None, "--token", help="The secret on the command line (visible in ps: prefer --token-file or EDGEKIT_AGENT_TOKEN)."),
    max_body_mb: float = typer.Option(256.0, "--max-body-mb", help="Largest model accepted, in MB."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to receive a whole request (and per read)."),
    max_connections: int = typer.Option(32, "--max-connections", help="Connections served at once; more get 503."),
) -> None:
    """Serve GET /v1/facts and POST /v1/profile for 'edgekit profile --agent' (Ctrl-C stops).

    The token: --token-file PATH, or EDGEKIT_AGENT_TOKEN in the environment (--token works but shows in ps).
    """
    import sys

    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.agent import serve
    from edgekit.targets.agent_client import read_token

    token, warning = read_token(token, token_file)
    if not token or not token.strip():
        raise UsageError("the agent refuses to start without a token: pass --token-file PATH or set EDGEKIT_AGENT_TOKEN")
    if warning:
        print(warning, file=sys.stderr)
    serve(host, port, token=token, max_body_mb=max_body_mb, timeout_s=timeout, max_connections=max_connections)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent_command)
