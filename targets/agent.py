"""The profiling agent: a small HTTP service on a device that times the models it is sent.

Runs with only ``edgekit[ort]`` installed (standard library HTTP, onnxruntime, numpy; no torch, no
onnx). Every endpoint needs ``Authorization: Bearer <token>``. Requests are served on threads, but
models run one at a time (a lock), so two measurements never compete for the CPU.

- ``GET /v1/facts``: what the device is (:func:`edgekit.targets.profile.device_facts`) and the agent's limits.
- ``POST /v1/profile?threads=1&warmup=10&runs=50&per_node=0``: the body is the raw model file bytes (``format=NAME``, default onnx, names its format);
  the answer is :meth:`ProfileResult.to_json` under ``"profile"``.

Every answer is a JSON object with ``"agent": "edgekit"`` and ``"api": 1``; errors carry ``"error"``
(401 bad token, 404 unknown path, 400 bad parameter or model, 408 request not received in time, 411 no
Content-Length, 413 too large, 503 too many connections).

A connection cannot be held open: receiving a request (headers and body) has one deadline of
``timeout_s`` in all, however slowly the bytes come; at most ``max_connections`` are served at once
and the next ones get 503 at once; the listen backlog holds 128; a client that hangs up is logged in
one line, never a traceback. The token comes from ``--token-file`` or ``EDGEKIT_AGENT_TOKEN``
(:func:`read_token`); ``--token`` still works but shows in ``ps``.

Example:
    >>> server = make_server("127.0.0.1", 0, token="s3cret", log=False)
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.server_close()
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edgekit.runtimes.errors import EdgekitError, UsageError
from edgekit.runtimes.formats import FORMAT_NAMES, find_format, get_format

__all__ = ["API_VERSION", "DEFAULT_PORT", "MAX_CONNECTIONS", "AgentServer", "make_server", "serve", "is_loopback"]

API_VERSION = 1
DEFAULT_PORT = 8765
LIMITS = {"threads": (1, 256), "warmup": (0, 1000), "runs": (1, 10_000)}  # bounded work per request
_DRAIN_BYTES = 4 << 20  # after an early answer, read at most this much of an unread body, so the client sees it
_DRAIN_SECONDS = 2.0
MAX_CONNECTIONS = 32  # served at once; more get 503 (each holds a thread and maybe an upload)
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server; build it with :func:`make_server`."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # listen backlog (socketserver's default of 5 drops bursts)

    def __init__(self, address: tuple[str, int], *, token: str, max_body_bytes: int, timeout_s: float, log: bool,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.token = token.encode("utf-8")
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.log = log
        self.run_lock = threading.Lock()
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        """Serve on a thread while a slot is free; else answer 503 at once and close."""
        if not self._slots.acquire(blocking=False):
            body = json.dumps({"agent": "edgekit", "api": API_VERSION,
                               "error": f"busy: {self.max_connections} connections are being served; retry later"}).encode()
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """A client that hung up or timed out is one log line, not a traceback; anything else as usual."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            if self.log:
                sys.stderr.write(f"edgekit agent: {client_address[0]} disconnected ({type(exc).__name__})\n")
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    token: str,
    max_body_mb: float = 256,
    timeout_s: float = 60.0,
    log: bool = True,
    max_connections: int = MAX_CONNECTIONS,
) -> AgentServer:
    """Bind the agent (port 0: any free port, read it from ``server.url``); call ``serve_forever()`` on it.

    Example:
        >>> make_server(token="")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: the agent needs a non-empty token (--token-file or EDGEKIT_AGENT_TOKEN)
    """
    if not isinstance(token, str) or not token.strip():
        raise UsageError("the agent needs a non-empty token (--token-file or EDGEKIT_AGENT_TOKEN)")
    if not max_body_mb > 0:
        raise UsageError(f"--max-body-mb must be > 0, got {max_body_mb}")
    if not timeout_s > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout_s}")
    if not 1 <= max_connections <= 4096:
        raise UsageError(f"--max-connections must be in 1..4096, got {max_connections}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {port}")
    try:
        server = AgentServer(
            (host, port), token=token, max_body_bytes=int(max_body_mb * (1 << 20)), timeout_s=timeout_s, log=log,
            max_connections=max_connections,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    if not is_loopback(host):
        print(
            f"warning: the agent listens on {host} without TLS: the token and the models travel in clear text; "
            "use it on a trusted network only, or bind 127.0.0.1 and reach it through an SSH tunnel",
            file=sys.stderr,
        )
    return server


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    token: str,
    max_body_mb: float = 256,
    timeout_s: float = 60.0,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Run the agent until Ctrl-C.

    Example:
        >>> serve(token="s3cret")   # doctest: +SKIP
        edgekit agent listening on http://127.0.0.1:8765 ...
    """
    server = make_server(host, port, token=token, max_body_mb=max_body_mb, timeout_s=timeout_s, max_connections=max_connections)
    print(f"edgekit agent listening on {server.url} (models run one at a time; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = "edgekit-agent"

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # per-read socket timeout (StreamRequestHandler applies it)
        self._unread = 0
        self._expired = False
        # ... and one deadline for receiving the whole request, however slowly its bytes trickle in
        self._deadline = threading.Timer(self.server.timeout_s, self._expire)
        self._deadline.daemon = True
        self._deadline.start()
        super().setup()

    def _expire(self) -> None:
        self._expired = True
        try:
            self.connection.shutdown(socket.SHUT_RD)  # wakes a blocked read with end-of-file; answering still works
        except OSError:
            pass

    def finish(self) -> None:
        self._deadline.cancel()
        try:
            super().finish()
        except OSError:  # the client is gone: nothing to flush to
            pass

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self._expired and not getattr(self, "_answered", False) and self.server.log:
            sys.stderr.write(f"edgekit agent: {self.address_string()} request not received within {self.server.timeout_s:g} s; closed\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        if self.server.log:
            sys.stderr.write(f"edgekit agent: {self.address_string()} {format % args}\n")

    # --- responses ---------------------------------------------------------------------------
    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps({"agent": "edgekit", "api": API_VERSION, **payload}).encode("utf-8")
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="edgekit-agent"')
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True
        if self._unread:
            self._drain()

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def _drain(self) -> None:
        """Read (a bounded part of) an unread request body so the client gets our answer, not a reset."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_DRAIN_SECONDS)
            left = min(self._unread, _DRAIN_BYTES)
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 16)) if hasattr(self.rfile, "read1") else self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        self._unread = 0

    # --- routing -----------------------------------------------------------------------------
    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8"), self.server.token):
            return True
        self._error(401, "missing or wrong token: send 'Authorization: Bearer <token>'")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorized():
            return
        if urlsplit(self.path).path != "/v1/facts":
            self._error(404, f"no endpoint GET {urlsplit(self.path).path} (try GET /v1/facts, POST /v1/profile)")
            return
        from .profile import device_facts

        limits = {"max_body_bytes": self.server.max_body_bytes, "timeout_s": self.server.timeout_s, **{
            name: {"min": low, "max": high} for name, (low, high) in LIMITS.items()}}
        self._send(200, {"facts": device_facts(), "limits": limits})

    def do_POST(self) -> None:  # noqa: N802
        length_header = self.headers.get("Content-Length")
        try:
            self._unread = max(int(length_header), 0) if length_header is not None else 0
        except ValueError:
            self._unread = 0
        if not self._authorized():
            return
        url = urlsplit(self.path)
        if url.path != "/v1/profile":
            self._error(404, f"no endpoint POST {url.path} (try POST /v1/profile)")
            return
        try:
            params = _parse_params(url.query)
        except ValueError as exc:
            self._error(400, str(exc))
            return
        if length_header is None:
            self._error(411, "send the model with a Content-Length header (chunked uploads are not supported)")
            return
        if self._unread > self.server.max_body_bytes:
            self._error(
                413,
                f"the model is {self._unread / (1 << 20):.1f} MB; this agent accepts at most "
                f"{self.server.max_body_bytes / (1 << 20):.1f} MB (its --max-body-mb)",
            )
            return
        if self._unread == 0:
            self._error(400, "empty body: POST the model file's bytes")
            return
        suffix = get_format(params.pop("format")).suffix
        with tempfile.TemporaryDirectory(prefix="edgekit-agent-") as tmp:
            model = Path(tmp) / f"model{suffix}"
            try:
                self._receive(model)
                self._deadline.cancel()  # received in time: the measurement itself may take longer
            except TimeoutError:
                self._error(408, f"the upload stalled for more than {self.server.timeout_s:g} s")
                return
            except ValueError as exc:
                self._error(400, str(exc))
                return
            status, payload = self._profile(model, params)
        self._send(status, payload)

    def _receive(self, model: Path) -> None:
        expected = self._unread
        with open(model, "wb") as handle:
            while self._unread > 0:
                chunk = self.rfile.read(min(self._unread, 1 << 20))
                if not chunk:
                    if self._expired:
                        raise TimeoutError
                    raise ValueError(f"the body ended after {expected - self._unread} of {expected} bytes")
                handle.write(chunk)
                self._unread -= len(chunk)

    def _profile(self, model: Path, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        from .profile import profile_model

        with self.server.run_lock:
            try:
                result = profile_model(model, **params)
            except EdgekitError as exc:
                return 400, {"error": str(exc).replace(str(model), "uploaded model")}
            except Exception as exc:  # noqa: BLE001 - a model that loads but fails to run, or a bug
                message = (str(exc).strip().splitlines() or [type(exc).__name__])[0].replace(str(model), "uploaded model")
                if type(exc).__module__.startswith("onnxruntime"):
                    return 400, {"error": f"onnxruntime cannot run the uploaded model: {message}"}
                return 500, {"error": f"internal agent error: {type(exc).__name__}: {message}"}
        return 200, {"profile": result.to_json()}


def _parse_params(query: str) -> dict[str, Any]:
    """``threads``, ``warmup``, ``runs`` (bounded integers), ``per_node`` (0/1/true/false) and ``format`` (a
    registered format name, default onnx: the uploaded bytes are saved under its suffix) from a query string."""
    raw = parse_qs(query, keep_blank_values=True)
    known = (*LIMITS, "per_node", "format")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown query parameter {unknown[0]!r} (expected {', '.join(known)})")
    params: dict[str, Any] = {"threads": 1, "warmup": 10, "runs": 50, "per_node": False, "format": "onnx"}
    for name, values in raw.items():
        value = values[-1].strip().lower()
        if name == "format":
            if find_format(value) is None:
                raise ValueError(f"query parameter format: expected one of {', '.join(FORMAT_NAMES)}, got {values[-1]!r}")
            params[name] = value
            continue
        if name == "per_node":
            if value not in ("0", "1", "true", "false"):
                raise ValueError(f"query parameter per_node: expected 0, 1, true or false, got {values[-1]!r}")
            params[name] = value in ("1", "true")
            continue
        low, high = LIMITS[name]
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"query parameter {name}: expected an integer in {low}..{high}, got {values[-1]!r}") from None
        if not low <= number <= high:
            raise ValueError(f"query parameter {name}: expected an integer in {low}..{high}, got {number}")
        params[name] = number
    return params
