"""The profiling agent and its client, on loopback: auth, limits, bad models, and every client failure."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgekit.cli import main
from edgekit.runtimes.bundle import sha256_file
from edgekit.targets.agent import make_server
from edgekit.targets.agent_client import AgentClient, AgentError
from edgekit.targets.store import LatencyStore

from .test_profile import export_tiny_onnx

TOKEN = "s3cret-token"
MAX_BODY_MB = 0.25  # 256 KiB: the tiny model fits, a 300 KiB body does not


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def start(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def stop(server, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def agent_url():
    server = make_server("127.0.0.1", 0, token=TOKEN, max_body_mb=MAX_BODY_MB, timeout_s=2.0, log=False)
    thread = start(server)
    yield server.url
    stop(server, thread)


def raw(url: str, method: str = "GET", body: bytes | None = None, token: str | None = TOKEN) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_modules_import_without_torch_or_onnx():
    code = (
        "import sys\n"
        "import edgekit.targets.agent, edgekit.targets.agent_client, edgekit.targets.profile, edgekit.targets.store\n"
        "import edgekit.targets.profile as p; p.device_facts()\n"
        "heavy = [m for m in ('torch', 'onnx', 'typer') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_round_trip_facts_and_profile(agent_url, tiny_onnx):
    client = AgentClient(agent_url, TOKEN, timeout_s=30)
    facts = client.facts()
    assert facts["logical_cores"] >= 1 and "CPUExecutionProvider" in facts["providers"]
    result = client.profile(tiny_onnx, threads=1, warmup=1, runs=5, per_node=True)
    assert result.stats.runs == 5 and result.stats.source == "measured"
    assert result.model_sha256 == sha256_file(tiny_onnx)
    assert result.runtime == "onnxruntime" and any(n.op_type == "Conv" for n in result.per_node)
    status, payload = raw(agent_url + "/v1/facts")
    assert status == 200 and payload["limits"]["max_body_bytes"] == int(MAX_BODY_MB * (1 << 20))


def test_token_is_required_everywhere(agent_url, tiny_onnx):
    body = tiny_onnx.read_bytes()
    for token in (None, "wrong", TOKEN + "x", ""):
        for method, route, data in (("GET", "/v1/facts", None), ("POST", "/v1/profile", body), ("GET", "/nope", None)):
            status, payload = raw(agent_url + route, method, data, token=token)
            assert status == 401 and "token" in payload["error"], (token, route)
    with pytest.raises(AgentError, match=f"agent at {agent_url} refused the token"):
        AgentClient(agent_url, "wrong", timeout_s=5).facts()


def test_oversized_body_is_refused_with_413(agent_url, tiny_onnx, tmp_path):
    status, payload = raw(agent_url + "/v1/profile", "POST", b"\0" * (300 << 10))
    assert status == 413 and "at most 0.2 MB" in payload["error"]
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * (300 << 10))
    with pytest.raises(AgentError, match="accepts at most .* \\(HTTP 413\\)"):
        AgentClient(agent_url, TOKEN, timeout_s=5).profile(big)
    big.write_bytes(b"\0" * (8 << 20))  # more than the agent drains: it hangs up mid-upload, the client asks why
    with pytest.raises(AgentError, match="8.0 MB and the agent accepts at most 0.2 MB|accepts at most .* \\(HTTP 413\\)"):
        AgentClient(agent_url, TOKEN, timeout_s=5).profile(big)


def test_corrupt_model_and_bad_parameters_are_400(agent_url, tiny_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(AgentError, match="uploaded model: onnxruntime cannot load it.*\\(HTTP 400\\)") as info:
        AgentClient(agent_url, TOKEN, timeout_s=10).profile(bad)
    assert "edgekit-agent-" not in str(info.value)  # the agent's temp path does not leak
    body = tiny_onnx.read_bytes()
    for query, message in (("runs=0", "runs: expected an integer in 1..10000"), ("threads=x", "threads"),
                           ("per_node=maybe", "per_node"), ("color=red", "unknown query parameter 'color'")):
        status, payload = raw(f"{agent_url}/v1/profile?{query}", "POST", body)
        assert status == 400 and message in payload["error"], (query, payload)
    status, payload = raw(agent_url + "/v1/other", "POST", body)
    assert status == 404


def test_model_runs_are_serialized(agent_url, tiny_onnx, monkeypatch):
    import edgekit.targets.profile as profile

    real, active, peak, lock = profile.profile_model, [0], [0], threading.Lock()

    def counting(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.15)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(profile, "profile_model", counting)
    client = AgentClient(agent_url, TOKEN, timeout_s=30)
    results, errors = [], []

    def one() -> None:
        try:
            results.append(client.profile(tiny_onnx, warmup=0, runs=2))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(results) == 3 and peak[0] == 1


def test_client_error_when_nobody_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AgentError, match=f"no agent at http://127.0.0.1:{port} \\(connection refused\\)"):
        AgentClient(f"http://127.0.0.1:{port}", TOKEN, timeout_s=1).facts()


class _HtmlHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<html><body>router login</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - reads the upload like an ordinary web server, then answers HTML
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def log_message(self, *args) -> None:
        pass


class _SlowHandler(_HtmlHandler):
    def do_GET(self) -> None:  # noqa: N802
        time.sleep(2.5)
        try:
            super().do_GET()
        except OSError:  # the client gave up long ago
            pass


@pytest.mark.parametrize("handler, message", [
    (_HtmlHandler, "answered something that is not an edgekit agent response"),
    (_SlowHandler, "did not answer within 1 s"),
])
def test_client_errors_for_foreign_and_slow_servers(handler, message, tiny_onnx):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = start(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        started = time.monotonic()
        with pytest.raises(AgentError, match=message) as info:
            AgentClient(url, TOKEN, timeout_s=1).facts()
        assert url in str(info.value) and time.monotonic() - started < 2.4
        if handler is _HtmlHandler:
            with pytest.raises(AgentError, match=message):
                AgentClient(url, TOKEN, timeout_s=1).profile(tiny_onnx)
    finally:
        stop(server, thread)


def test_cli_profile_through_the_agent_stores_under_the_target(agent_url, tiny_onnx, tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    args = ["profile", str(tiny_onnx), "--target", "rpi5", "--agent", agent_url, "--token", TOKEN,
            "--store", str(db), "--runs", "4", "--warmup", "1"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == f"measured on raspberry-pi-5 via agent {agent_url}" and data["target"] == "raspberry-pi-5"
    with LatencyStore(db) as store:
        rec = store.lookup("raspberry-pi-5", sha256_file(tiny_onnx), runtime="onnxruntime", precision="fp32", threads=1)
        assert store.records(target="host") == []
    assert rec is not None and rec.runs == 4 and rec.p50_ms == data["stats"]["p50_ms"]
    assert rec.meta["source"] == data["source"]

    assert main([*args[:-6], "--token", "wrong", "--store", str(db)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: agent at {agent_url} refused the token (HTTP 401)"


def test_cli_agent_refuses_to_start_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("EDGEKIT_AGENT_TOKEN", raising=False)
    assert main(["agent", "--port", "0"]) == 2
    assert "without a token" in capsys.readouterr().err


def test_non_loopback_bind_warns(capsys):
    server = make_server("0.0.0.0", 0, token=TOKEN, log=False)
    server.server_close()
    assert "without TLS" in capsys.readouterr().err
    server = make_server("127.0.0.1", 0, token=TOKEN, log=False)
    server.server_close()
    assert capsys.readouterr().err == ""


def test_stalled_requests_time_out(tiny_onnx):
    server = make_server("127.0.0.1", 0, token=TOKEN, timeout_s=0.5, log=False)
    thread = start(server)
    try:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as silent:  # sends nothing at all
            assert silent.recv(100) == b""  # the agent hangs up after its timeout
        with socket.create_connection(("127.0.0.1", port), timeout=5) as stalled:  # promises 1000 bytes, sends 10
            stalled.sendall(f"POST /v1/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                            "Content-Length: 1000\r\n\r\n0123456789".encode())
            answer = b""
            for _ in range(100):  # bounded: read the whole answer, until the agent closes
                chunk = stalled.recv(4096)
                if not chunk:
                    break
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.0 408") and "stalled for more than 0.5 s" in answer
    finally:
        stop(server, thread)
