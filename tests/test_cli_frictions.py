"""Small CLI frictions (issue 9, item 9): thread defaults, agent machine facts, quiet export failures,
torch-free commands, untruncated tables, JSON errors and plain progress lines when piped."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgekit.cli import main
from edgekit.runtimes.bundle import sha256_file
from edgekit.targets.agent import make_server
from edgekit.targets.host import detect_host
from edgekit.targets.store import LatencyStore

from .test_profile import export_tiny_onnx

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **(env or {})})


# (a) ------------------------------------------------------------------------------------------------
def test_targets_show_finds_what_profile_measured_with_the_same_default_threads(tiny_onnx, tmp_path, capsys):
    store = str(tmp_path / "s.sqlite")
    assert main(["profile", str(tiny_onnx), "--runs", "5", "--warmup", "1", "--store", store, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["threads"] == 1

    assert main(["targets", "show", "host", "--model", str(tiny_onnx), "--store", store, "--json"]) == 0
    estimates = json.loads(capsys.readouterr().out)["model_estimates"]
    assert estimates["threads"] == 1
    row = next(r for r in estimates["latency"] if (r["unit"], r["precision"]) == ("cpu", "fp32"))
    assert row["source"] == "measured" and row["ms"] == pytest.approx(measured["stats"]["p50_ms"])

    assert main(["targets", "show", "host", "--model", str(tiny_onnx), "--store", store]) == 0
    assert "measured" in capsys.readouterr().out


# (b) ------------------------------------------------------------------------------------------------
@pytest.fixture()
def agent_url():
    server = make_server("127.0.0.1", 0, token=TOKEN, timeout_s=5.0, log=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_agent_measurement_records_the_agents_machine_and_warns_when_it_is_not_the_target(
        agent_url, tiny_onnx, tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    args = ["profile", str(tiny_onnx), "--target", "rpi5", "--agent", agent_url, "--token", TOKEN,
            "--store", str(db), "--runs", "3", "--warmup", "1"]
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    machine = platform.machine()
    assert data["device"]["machine"] == machine and data["device"]["logical_cores"] == detect_host().logical_cores
    assert data["device"]["cpu_model"]
    assert machine != "aarch64"  # this test runs on the x86-64 host, not on a Pi
    expected = f"the agent's machine is {machine}, but raspberry-pi-5 is aarch64"
    assert expected in data["device_mismatch"]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and expected in warnings[0] and "measured on raspberry-pi-5" in warnings[0]
    with LatencyStore(db) as store:
        rec = store.lookup("raspberry-pi-5", sha256_file(tiny_onnx), runtime="onnxruntime", precision="fp32", threads=1)
    assert rec.meta["device"] == data["device"] and rec.meta["device_mismatch"] == data["device_mismatch"]


def test_host_measurement_records_the_machine_without_a_warning(tiny_onnx, tmp_path, capsys):
    assert main(["profile", str(tiny_onnx), "--runs", "3", "--warmup", "1", "--store", str(tmp_path / "s"), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["device"]["machine"] == platform.machine() and data["device_mismatch"] is None
    assert "warning" not in captured.err


# (c) ------------------------------------------------------------------------------------------------
def test_unsupported_op_prints_only_the_error(tmp_path, capfd):
    code = main(["export", "--model", "tests.fixtures.tiny_models:unsupported", "--out", str(tmp_path / "b"),
                 "--bench-runs", "0"])
    ctypes.CDLL(None).fflush(None)  # torch's C++ log goes through C stdio: flush it before reading fd 1
    captured = capfd.readouterr()
    assert code == 1
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if not line.startswith("edgekit: ")]
    assert len(errors) == 1 and errors[0].startswith("error: op aten::i0 cannot be exported to ONNX opset 17")


# (d) ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["targets", "show", "jetson"], ["targets", "list"], ["ofa", "info"],
                                  ["ofa", "info", "--json"]])
def test_light_commands_do_not_import_torch(args):
    result = _run_python(
        "import sys\nfrom edgekit.cli import main\n"
        f"code = main({args!r})\n"
        "print('TORCH', 'torch' in sys.modules, code)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "TORCH False 0"


# (e) ------------------------------------------------------------------------------------------------
def test_tables_do_not_truncate_names_at_80_columns():
    from edgekit.targets import list_targets

    result = subprocess.run([sys.executable, "-m", "edgekit", "targets", "list"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    for target in list_targets():
        assert target.name in result.stdout
        assert ", ".join(target.aliases) in result.stdout


# (f) ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, code, kind, message",
    [
        (["targets", "show", "jetsn", "--json"], 1, "TargetError", "unknown target 'jetsn'; did you mean 'jetson'?"),
        (["select", "--json", "--budget-ms", "2"], 2, "UsageError", "Missing option '--target'"),
        (["targets", "list", "--json", "--no-such-option"], 2, "UsageError", "No such option: --no-such-option"),
        (["profile", "missing.onnx", "--target", "rpi5", "--json"], 2, "UsageError",
         "measuring on raspberry-pi-5 needs the device's agent"),
    ],
)
def test_errors_under_json_are_a_json_object_on_stdout(capsys, args, code, kind, message):
    assert main(args) == code
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["type"] == kind and message in error["message"]
    assert "\n" not in error["message"]


def test_errors_without_json_stay_one_line_on_stderr(capsys):
    assert main(["targets", "show", "jetsn"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: unknown target 'jetsn'")


# (g) ------------------------------------------------------------------------------------------------
def test_progress_is_plain_lines_on_stderr_when_piped(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edgekit", "export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out",
         str(tmp_path / "b"), "--bench-runs", "2", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # stdout holds the JSON only
    lines = result.stderr.splitlines()
    assert lines == [
        "edgekit: loading model tests.fixtures.tiny_models:tiny_cnn",
        "edgekit: exporting tiny_cnn to onnx (opset 17)",
        "edgekit: validating against torch",
        "edgekit: measuring latency on this host",
        "edgekit: writing bundle",
    ]


def test_progress_says_each_message_once_into_a_file(capfd):
    from edgekit.cli.common import progress

    with progress() as say:
        for message in ("one", "one", "two", "one"):
            say(message)
    assert capfd.readouterr().err.splitlines() == ["edgekit: one", "edgekit: two", "edgekit: one"]
