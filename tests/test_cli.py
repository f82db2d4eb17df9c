"""The edgekit command line, run in-process: acceptance flows, --json, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekit.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_default_model_for_jetson_then_run_matches_torch(tmp_path, capsys):
    from edgekit.models.registry import ModelRequest, resolve_model

    out = tmp_path / "OUT"
    code, stdout, _ = run_cli(capsys, "export", "--target", "jetson", "--out", str(out), "--bench-runs", "5")
    assert code == 0, stdout
    assert "parity vs torch" in stdout and "measured on host" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "jetson-orin-nano"
    # the ONNX and the TensorRT build kit (tests/test_tensorrt_kit.py checks the kit)
    assert set(manifest["files"]) == {"model.onnx", "build_engine.sh", "build_engine.py", "tensorrt.json", "TENSORRT.md"}
    assert len(manifest["files"]["model.onnx"]["sha256"]) == 64

    assert manifest["extra"]["space"] == "ofa-mbv3-shapes"  # the trained supernet is the default
    assert manifest["extra"]["bn_recalibration"].startswith("512 images")
    (image,) = manifest["graphs"]["model"]["inputs"]
    x = np.random.default_rng(3).random((1, *image["shape"][1:])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, stdout, _ = run_cli(capsys, "run", str(out), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"))
    assert code == 0, stdout
    got = np.load(tmp_path / "o" / "logits.npy")
    with torch.no_grad():
        expected = resolve_model(ModelRequest()).module(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_export_json_and_inspect_and_bench(tiny_bundle, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out",
                              str(tmp_path / "b"), "--bench-runs", "0", "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["manifest"]["graphs"]["model"]["inputs"][0]["shape"] == ["batch", 3, 16, 16]
    assert data["manifest"]["latency"] == []

    code, stdout, _ = run_cli(capsys, "inspect", str(tiny_bundle), "--json")
    stats = json.loads(stdout)
    # conv 8x3x3x3 over 16x16 + linear 8->5; BatchNorm folds into the conv
    assert stats["macs"] == 8 * 3 * 9 * 16 * 16 + 8 * 5
    assert stats["params"] == 8 * 3 * 9 + 8 + 8 * 5 + 5
    assert stats["ops"]["Conv"] == 1

    code, stdout, _ = run_cli(capsys, "bench", str(tiny_bundle), "--runs", "20", "--warmup", "2", "--json")
    bench = json.loads(stdout)
    assert code == 0 and bench["runs"] == 20 and bench["source"] == "measured"
    assert 0 < bench["p50_ms"] <= bench["p90_ms"] <= bench["p99_ms"]


def test_targets_list_and_show(capsys):
    code, stdout, _ = run_cli(capsys, "targets", "list", "--json")
    names = [t["name"] for t in json.loads(stdout)]
    assert code == 0 and len(names) >= 10 and "jetson-orin-nano" in names
    code, stdout, _ = run_cli(capsys, "targets", "show", "jetson")
    assert code == 0 and "jetson-orin-nano" in stdout and "gpu" in stdout and "tensorrt" in stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["targets", "show", "jetsn"], 1, "error: unknown target 'jetsn'; did you mean 'jetson'?"),
        (["export", "--target", "nowhere"], 1, "error: unknown target 'nowhere'"),
        (["export", "--model", "tests.fixtures.tiny_models:no_shape"], 2, "no input shape; pass --input-shape"),
        (["export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--input-shape", "1,4,16,16"], 1,
         "does not fit the model"),
        (["export", "--model", "tests.fixtures.tiny_models:unsupported"], 1, "op aten::i0 cannot be exported"),
        (["run", "does-not-exist", "--input", "x.npy"], 1, "no such file or bundle directory"),
    ],
)
def test_user_errors_are_one_line_with_exit_codes(tmp_path, capsys, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    got, stdout, stderr = run_cli(capsys, *args)
    assert got == code
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_malformed_target_file(tmp_path, capsys):
    bad = tmp_path / "board.toml"
    bad.write_text('name = "board"\ndescription = "x"\ndefault_unit = "cpu"\n[units.cpu]\nkind = "cpu"\n'
                   'runtime = "onnxruntime"\nformats = ["onnx"]\nbogus = 1\n')
    code, _, stderr = run_cli(capsys, "export", "--target-file", str(bad), "--out", str(tmp_path / "b"))
    assert code == 1 and "board.toml: units.cpu" in stderr and "bogus" in stderr


def test_run_with_wrong_input_names_the_tensor(tiny_bundle, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    code, _, stderr = run_cli(capsys, "run", str(tiny_bundle), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"))
    assert code == 1 and "input 'input': dimension 2 must be 16" in stderr
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    code, _, stderr = run_cli(capsys, "run", str(tiny_bundle), "--input", str(tmp_path / "bad.npy"))
    assert code == 2 and "is not a readable .npy file" in stderr


def test_unwritable_output_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, stderr = run_cli(capsys, "export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--out",
                              str(tmp_path / "file" / "bundle"), "--bench-runs", "0")
    assert code == 1 and "cannot write the output directory" in stderr


def test_debug_shows_the_traceback(capsys):
    code, _, stderr = run_cli(capsys, "targets", "show", "jetsn", "--debug")
    assert code == 1 and "Traceback" in stderr and "TargetError" in stderr


def test_bad_option_is_a_usage_error(capsys):
    code, _, _ = run_cli(capsys, "export", "--no-such-option")
    assert code == 2


def test_console_script_exit_code():
    result = subprocess.run([sys.executable, "-m", "edgekit", "targets", "show", "jetsn"], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown target 'jetsn'; did you mean 'jetson'? (see: edgekit targets list)"


def test_export_records_the_targets_predicted_latency_labelled(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "export", "--model", "tests.fixtures.tiny_models:tiny_cnn", "--target", "jetson",
                              "--out", str(tmp_path / "b"), "--bench-runs", "0", "--json")
    assert code == 0
    (entry,) = json.loads(stdout)["manifest"]["latency"]
    # the bundle is ONNX: its latency is the cpu's (onnxruntime), not the tensorrt gpu's (tests/test_latency_format.py)
    assert entry["target"] == "jetson-orin-nano" and entry["unit"] == "cpu" and entry["source"] == "modeled"
    assert entry["ms"] > 0
