"""Talk to a profiling agent (:mod:`edgekit.targets.agent`) from the workstation. Standard library only.

Every failure is an :class:`AgentError` with one line naming the agent's URL: nobody listening, no
answer in time, an answer that is not from an edgekit agent, a refused token, or the agent's own error
message passed through.

Example:
    >>> client = AgentClient("http://127.0.0.1:9", "s3cret", timeout_s=1)
    >>> client.facts()
    Traceback (most recent call last):
    ...
    edgekit.targets.agent_client.AgentError: no agent at http://127.0.0.1:9 (connection refused)
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from edgekit.runtimes.errors import EdgekitError, UsageError
from edgekit.runtimes.formats import format_for_suffix, formats

from .profile import ProfileResult

__all__ = ["AgentError", "AgentClient", "TOKEN_ENV", "read_token"]

TOKEN_ENV = "EDGEKIT_AGENT_TOKEN"
MAX_TOKEN_FILE_BYTES = 4096


class AgentError(EdgekitError):
    """The profiling agent cannot be reached, refused the request, or answered something unusable."""


def read_token(token: str | None, token_file: str | Path | None, env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The agent token from ``--token-file``, else ``$EDGEKIT_AGENT_TOKEN``, else ``--token``, and a warning
    (or None): a token on the command line shows in ``ps``, a token file others can read is exposed.

    Example:
        >>> read_token("s3cret", None, env={})
        ('s3cret', 'warning: --token is visible to every user of this machine in ps; use --token-file PATH or EDGEKIT_AGENT_TOKEN instead')
        >>> read_token(None, None, env={"EDGEKIT_AGENT_TOKEN": "s3cret"})
        ('s3cret', None)
    """
    import os

    env = os.environ if env is None else env
    if token_file is not None and token is not None:
        raise UsageError("give the agent token once: --token-file or --token, not both")
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            info = path.stat()
            if info.st_size > MAX_TOKEN_FILE_BYTES:
                raise UsageError(f"--token-file {path}: {info.st_size} bytes; a token file holds one line (at most {MAX_TOKEN_FILE_BYTES} bytes)")
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise UsageError(f"--token-file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        if not text or "\n" in text:
            raise UsageError(f"--token-file {path}: expected one line holding the token")
        warning = (f"warning: --token-file {path} can be read by other users (chmod 600 it)"
                   if info.st_mode & 0o077 else None)
        return text, warning
    if token is not None and env.get(TOKEN_ENV) != token:
        return token, ("warning: --token is visible to every user of this machine in ps; "
                       f"use --token-file PATH or {TOKEN_ENV} instead")
    return (token if token is not None else env.get(TOKEN_ENV) or None), None


class AgentClient:
    """A client for one agent. ``timeout_s`` bounds each wait for the agent (connect, and each read).

    Example:
        >>> AgentClient("ftp://device", "t")
        Traceback (most recent call last):
        ...
        edgekit.targets.agent_client.AgentError: agent URL 'ftp://device': expected http://HOST:PORT or https://HOST:PORT
    """

    def __init__(self, url: str, token: str, timeout_s: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AgentError(f"agent URL {url!r}: expected http://HOST:PORT or https://HOST:PORT")
        if not token:
            raise AgentError(f"agent at {url}: no token given (--token or EDGEKIT_AGENT_TOKEN)")
        if not timeout_s > 0:
            raise AgentError(f"agent at {url}: timeout must be > 0 seconds, got {timeout_s}")
        self.url = url.strip().rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def facts(self) -> dict[str, Any]:
        """The device's facts (CPU, cores, memory, onnxruntime version and providers)."""
        payload = self._request("GET", "/v1/facts")
        facts = payload.get("facts")
        if not isinstance(facts, dict):
            raise self._garbage("no 'facts' object")
        return facts

    def profile(
        self,
        model_path: str | Path,
        threads: int = 1,
        warmup: int = 10,
        runs: int = 50,
        per_node: bool = False,
    ) -> ProfileResult:
        """Send the model file to the agent, which times it on the device in the runtime of the file's format
        (by its suffix); returns what it measured, with the agent's machine facts (asked separately from an
        agent too old to send them with the measurement)."""
        path = Path(model_path)
        if not path.is_file():
            raise AgentError(f"{path}: no such model file to send to the agent")
        fmt = format_for_suffix(path.suffix)
        if fmt is None:
            raise AgentError(f"{path}: unknown model file type {path.suffix!r} (expected one of "
                             f"{', '.join(f.suffix for f in formats())})")
        params = {"threads": threads, "warmup": warmup, "runs": runs, "per_node": int(per_node)}
        if fmt.name != "onnx":  # an agent from before formats were plug-ins knows only ONNX and no format parameter
            params["format"] = fmt.name
        query = urllib.parse.urlencode(params)
        size = path.stat().st_size
        try:
            with open(path, "rb") as body:
                payload = self._request("POST", f"/v1/profile?{query}", body=body, size=size)
        except _ClosedDuringUpload as exc:
            raise self._explain_closed(size) or exc from exc
        try:
            result = ProfileResult.from_json(payload.get("profile"))
        except ValueError as exc:
            raise self._garbage(f"profile: {exc}") from exc
        if result.device is None:
            facts = self.facts()
            device = {"machine": facts.get("machine"), "cpu_model": facts.get("cpu_model"),
                      "logical_cores": facts.get("logical_cores")}
            result = dataclasses.replace(result, device=device)
        return result

    def _explain_closed(self, size: int) -> AgentError | None:
        """After the agent hung up mid-upload: say so with its size limit, when it tells us the limit."""
        try:
            limit = self._request("GET", "/v1/facts").get("limits", {}).get("max_body_bytes")
        except AgentError:
            return None
        if isinstance(limit, int) and size > limit:
            return AgentError(
                f"agent at {self.url} refused the model: it is {size / (1 << 20):.1f} MB and the agent accepts at most "
                f"{limit / (1 << 20):.1f} MB (its --max-body-mb)"
            )
        return None

    # --- plumbing --------------------------------------------------------------------------------
    def _garbage(self, why: str) -> AgentError:
        return AgentError(f"agent at {self.url} answered something that is not an edgekit agent response ({why})")

    def _request(self, method: str, route: str, *, body: Any = None, size: int | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(size)
        request = urllib.request.Request(self.url + route, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                exc.close()
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason, body is not None) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc, body is not None) from exc
        return self._decode(status, raw)

    def _unreachable(self, reason: Any, uploading: bool) -> AgentError:
        if isinstance(reason, ConnectionRefusedError):
            return AgentError(f"no agent at {self.url} (connection refused)")
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return AgentError(f"agent at {self.url} did not answer within {self.timeout_s:g} s (timeout)")
        if isinstance(reason, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
            if uploading:
                return _ClosedDuringUpload(f"agent at {self.url} closed the connection while receiving the model")
            return AgentError(f"agent at {self.url} closed the connection without answering")
        if isinstance(reason, socket.gaierror):
            return AgentError(f"cannot reach agent at {self.url}: unknown host ({reason.strerror or reason})")
        if isinstance(reason, http.client.HTTPException):
            return self._garbage(f"bad HTTP: {type(reason).__name__}")
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return AgentError(f"cannot reach agent at {self.url}: {text}")

    def _decode(self, status: int, raw: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        ours = isinstance(payload, dict) and payload.get("agent") == "edgekit"
        if status == 401 and (ours or payload is None):
            raise AgentError(f"agent at {self.url} refused the token (HTTP 401)")
        if not ours:
            raise self._garbage(f"HTTP {status}, {'not JSON' if payload is None else 'wrong fields'}")
        if payload.get("api") != 1:
            raise AgentError(f"agent at {self.url} speaks API {payload.get('api')!r}; this edgekit speaks 1 (update one of them)")
        if status != 200:
            message = payload.get("error")
            if not isinstance(message, str):
                raise self._garbage(f"HTTP {status} without an error message")
            raise AgentError(f"agent at {self.url}: {message} (HTTP {status})")
        return payload


class _ClosedDuringUpload(AgentError):
    """Internal: the connection broke while the model was being sent (the agent may have refused its size)."""
