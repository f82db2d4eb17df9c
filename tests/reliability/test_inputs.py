"""Inputs: limits on what an input may make edgekit allocate (declared shapes, --batch, .npy headers),
the same input twice, and broken .npy files; each one line, exit code, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.runtimes.errors import InputMismatchError
from edgekit.runtimes.limits import check_array_bytes, load_npy
from edgekit.runtimes.spec import TensorSpec, random_inputs

from .helpers import cli_error, load_benchmark, snapshot

crash = load_benchmark("crash")


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> Path:
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "b"
    crash.write(out, "v1", crash.tiny_onnx())
    return out


def _declare(out: Path, shape: list, sizes: dict) -> None:
    data = json.loads((out / "manifest.json").read_text())
    data["graphs"]["model"]["inputs"][0]["shape"] = shape
    data["example_sizes"] = sizes
    (out / "manifest.json").write_text(json.dumps(data))


def test_bench_batch_of_a_hundred_million_is_refused_before_allocating(bundle, capsys):
    _declare(bundle, ["batch", 4], {})
    before = snapshot(bundle.parent)
    cli_error(capsys, ["bench", str(bundle), "--batch", "100000000", "--runs", "1", "--warmup", "0"], 1,
              "input 'x': shape (100000000, 4) float32 needs 1.49 GiB, more than the 1.00 GiB limit (set EDGEKIT_MAX_INPUT_MB to allow more)")
    assert snapshot(bundle.parent) == before


def test_a_manifest_declaring_a_huge_shape_is_refused_by_bench(bundle, capsys):
    _declare(bundle, ["batch", "n"], {"batch": 1 << 20, "n": 1 << 20})
    cli_error(capsys, ["bench", str(bundle), "--runs", "1", "--warmup", "0"], 1,
              "input 'x': shape (1048576, 1048576) float32 needs 4096.00 GiB, more than the 1.00 GiB limit")


def test_the_input_limit_is_overridable(monkeypatch):
    monkeypatch.setenv("EDGEKIT_MAX_INPUT_MB", "1")
    with pytest.raises(InputMismatchError, match=r"needs 0.00 GiB, more than the 0.00 GiB limit"):
        random_inputs([TensorSpec("x", (1, 300_000))])
    monkeypatch.setenv("EDGEKIT_MAX_INPUT_MB", "2")
    assert random_inputs([TensorSpec("x", (1, 300_000))])["x"].nbytes == 1_200_000


@pytest.mark.parametrize("value", ["0", "-5", "inf", "lots"])
def test_a_bad_input_limit_is_a_usage_error(monkeypatch, value):
    from edgekit.runtimes.errors import UsageError

    monkeypatch.setenv("EDGEKIT_MAX_INPUT_MB", value)
    with pytest.raises(UsageError, match=f"EDGEKIT_MAX_INPUT_MB='{value}': expected a number of MiB > 0"):
        check_array_bytes((1,), "float32", "x")


def _npy_header(path: Path, shape: tuple, descr: str = "<f4") -> None:
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)


def test_a_npy_header_claiming_1e13_rows_is_refused_before_np_load(bundle, capsys):
    fake = bundle.parent / "huge.npy"
    _npy_header(fake, (10**13, 4))
    before = snapshot(bundle.parent)
    cli_error(capsys, ["run", str(bundle), "--input", str(fake)], 1,
              f"--input {fake}: {fake}: shape (10000000000000, 4) float32 needs 149011.61 GiB, more than the 1.00 GiB limit")
    assert snapshot(bundle.parent) == before


def test_a_npy_header_larger_than_its_file_is_refused(bundle, capsys):
    fake = bundle.parent / "short.npy"
    _npy_header(fake, (1000, 4))
    cli_error(capsys, ["run", str(bundle), "--input", str(fake)], 2,
              "its header declares (1000, 4) float32 (16000 bytes) but the file holds 64")


def test_a_npy_of_python_objects_is_refused(bundle, capsys):
    fake = bundle.parent / "objects.npy"
    np.save(fake, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cli_error(capsys, ["run", str(bundle), "--input", str(fake)], 2, "holds Python objects (pickles are refused)")


@pytest.mark.parametrize("content", [b"", b"not numpy at all", b"\x93NUMPY\x01\x00garbage"])
def test_a_file_that_is_not_npy_is_one_line(bundle, capsys, content):
    fake = bundle.parent / "bad.npy"
    fake.write_bytes(content)
    cli_error(capsys, ["run", str(bundle), "--input", str(fake)], 2, "is not a readable .npy file")


def test_the_same_input_twice_is_refused(bundle, capsys):
    good = bundle.parent / "x.npy"
    np.save(good, np.zeros((1, 4), np.float32))
    cli_error(capsys, ["run", str(bundle), "--input", f"x={good}", "--input", f"x={good}"], 2,
              "input 'x' is given twice")


def test_a_good_npy_still_runs(bundle, capsys):
    good = bundle.parent / "x.npy"
    np.save(good, np.array([[-1, 2, -3, 4]], np.float32))
    assert load_npy(good, "x").tolist() == [[-1, 2, -3, 4]]


def test_a_wrong_shape_input_names_the_tensor(bundle, capsys):
    good = bundle.parent / "x.npy"
    np.save(good, np.zeros((1, 5), np.float32))
    cli_error(capsys, ["run", str(bundle), "--input", str(good)], 1, "'x'")


@pytest.mark.parametrize("command", [
    ["bench", "{b}", "--threads", "0"], ["bench", "{b}", "--threads", "-1"], ["run", "{b}", "--input", "x.npy", "--threads", "0"],
    ["profile", "{b}", "--threads", "0"], ["generate", "{b}", "--text", "a", "--threads", "0"],
])
def test_threads_below_one_are_usage_errors(bundle, capsys, command):
    args = [a.replace("{b}", str(bundle)) for a in command]
    before = snapshot(bundle.parent)
    assert cli_error(capsys, [*args, "--json"], 2, "'--threads'")
    assert snapshot(bundle.parent) == before
