"""The profiling agent cannot be held open: one deadline per request, a cap on connections (503 beyond
it), a real listen backlog, quiet disconnects; the token from a file or the environment."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from edgekit.targets.agent import make_server
from edgekit.targets.agent_client import TOKEN_ENV, read_token

from .helpers import cli_error

TOKEN = "s3cret-token"


@pytest.fixture
def server_factory():
    started = []

    def start(**options):
        server = make_server("127.0.0.1", 0, token=TOKEN, **{"log": False, **options})
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _connect(server) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=10)


def test_a_trickling_client_without_a_token_is_cut_at_the_whole_request_deadline(server_factory):
    server = server_factory(timeout_s=1.0)
    with _connect(server) as sock:
        start = time.monotonic()
        closed_after = None
        for byte in b"GET /v1/facts HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - start
                break
            sock.settimeout(0.25)  # one byte every 0.25 s: each read is well inside the 1 s per-read timeout
            try:
                sock.recv(4096)  # an answer (408) or the end of the stream: either way the server cut the request
            except socket.timeout:
                continue
            closed_after = time.monotonic() - start
            break
    assert closed_after is not None and closed_after < 5.0, closed_after  # before the fix: never (200 x 0.25 s)


def test_a_slow_upload_gets_408_at_the_deadline(server_factory):
    server = server_factory(timeout_s=1.0)
    with _connect(server) as sock:
        sock.sendall(f"POST /v1/profile HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode())
        start = time.monotonic()
        answer = b""
        sock.settimeout(0.3)
        while time.monotonic() - start < 5:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                break
            answer += chunk
        assert b" 408 " in answer.split(b"\r\n")[0] and time.monotonic() - start < 3.5, answer


def test_connections_beyond_the_cap_get_503_at_once(server_factory):
    server = server_factory(timeout_s=5.0, max_connections=3)
    holders = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.3)  # the three are accepted and hold their slots (they send nothing)
        with _connect(server) as extra:
            start = time.monotonic()
            answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"busy: 3 connections are being served" in answer
            assert time.monotonic() - start < 2.5  # at once, not after the 5 s deadline
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.3)
    with _connect(server) as sock:  # slots come back
        sock.sendall(f"GET /nowhere HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        assert b" 404 " in sock.recv(4096).split(b"\r\n")[0]


def test_the_listen_backlog_is_not_five(server_factory):
    server = server_factory()
    assert server.request_queue_size == 128


def test_a_client_that_hangs_up_is_one_line_not_a_traceback(server_factory, capfd):
    server = server_factory(log=True)
    for _ in range(20):
        with _connect(server) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.sendall(f"GET /v1/facts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    time.sleep(0.5)
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        server.handle_error(None, ("127.0.0.1", 1))
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "edgekit agent: 127.0.0.1 disconnected (BrokenPipeError)" in err


def test_token_from_a_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    path.chmod(0o600)
    assert read_token(None, path, env={}) == ("s3cret", None)
    path.chmod(0o644)
    token, warning = read_token(None, path, env={})
    assert token == "s3cret" and warning == f"warning: --token-file {path} can be read by other users (chmod 600 it)"


def test_token_from_the_environment_gives_no_warning():
    assert read_token(None, None, env={TOKEN_ENV: "abc"}) == ("abc", None)
    assert read_token("abc", None, env={TOKEN_ENV: "abc"}) == ("abc", None)  # typer-style envvar fill-in


def test_token_on_the_command_line_warns_about_ps():
    token, warning = read_token("abc", None, env={})
    assert token == "abc" and "visible to every user of this machine in ps" in warning


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("", "expected one line holding the token"),
    ("a\nb\n", "expected one line holding the token"),
    ("x" * 5000, "5000 bytes; a token file holds one line (at most 4096 bytes)"),
])
def test_bad_token_files_are_usage_errors(tmp_path, capsys, monkeypatch, content, message):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    cli_error(capsys, ["agent", "--port", "0", "--token-file", str(path)], 2, f"--token-file {path}: {message}")


def test_token_file_and_token_together_are_refused(tmp_path, capsys):
    path = tmp_path / "token"
    path.write_text("abc")
    cli_error(capsys, ["agent", "--port", "0", "--token-file", str(path), "--token", "abc"], 2,
              "give the agent token once: --token-file or --token, not both")


def test_agent_max_connections_out_of_range_is_refused(capsys, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "abc")
    cli_error(capsys, ["agent", "--port", "0", "--max-connections", "0"], 2, "--max-connections must be in 1..4096, got 0")
