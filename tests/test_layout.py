"""``--layout nhwc``: image inputs channels-last, transposed inside the graph; recorded in the specs."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

import edgekit.runtimes as rt  # noqa: E402
from edgekit.cli import main  # noqa: E402

TINY = "tests.fixtures.tiny_models:tiny_cnn"  # input (1, 3, 16, 16)


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("litert_torch") is None, reason="needs the tflite extra"))])
def test_nhwc_bundle_takes_channels_last_and_matches_the_nchw_one(tmp_path, fmt):
    base = ["export", "--model", TINY, "--format", fmt, "--bench-runs", "0"]
    assert main([*base, "--out", str(tmp_path / "nchw")]) == 0
    assert main([*base, "--layout", "nhwc", "--out", str(tmp_path / "nhwc")]) == 0
    manifest = json.loads((tmp_path / "nhwc" / "manifest.json").read_text())
    assert manifest["graphs"]["model"]["inputs"][0]["shape"] == ["batch", 16, 16, 3]
    assert manifest["provenance"]["layout"].startswith("NHWC inputs (input)")
    assert manifest["validation"]["passed"]
    image = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    nchw = next(iter(rt.load(tmp_path / "nchw").run({"input": image}).values()))
    nhwc = next(iter(rt.load(tmp_path / "nhwc").run({"input": np.ascontiguousarray(image.transpose(0, 2, 3, 1))}).values()))
    np.testing.assert_allclose(nhwc, nchw, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--model", "slm-encdec", "--layout", "nhwc"], "--layout nhwc: slm-encdec has graphs encoder, decoder"),
    (["--model", "tests.fixtures.tiny_models:unsupported", "--layout", "nhwc"], "--layout nhwc: unsupported has no image input"),
    (["--model", TINY, "--layout", "chw"], "--layout 'chw': expected one of nchw, nhwc"),
])
def test_layout_errors_are_one_line(tmp_path, capsys, args, message):
    code = main(["export", *args, "--bench-runs", "0", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
