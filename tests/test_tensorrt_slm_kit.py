"""The TensorRT kit of an encoder-decoder SLM: one engine per graph, optimisation profiles over the dynamic
lengths (batch, source, past with an empty first step), one build_engine.sh / build_engine.py for both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edgekit.cli import main  # noqa: E402

BASH = shutil.which("bash")


@pytest.fixture(scope="module")
def slm_jetson(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("slm-jetson") / "b"
    assert main(["export", "--model", "slm-encdec", "--target", "jetson", "--out", str(out)]) == 0
    return out


def test_kit_plans_one_engine_per_graph_with_length_profiles(slm_jetson):
    config = json.loads((slm_jetson / "tensorrt.json").read_text())
    assert list(config["graphs"]) == ["encoder", "decoder"]
    encoder, decoder = config["graphs"]["encoder"], config["graphs"]["decoder"]
    assert (encoder["engine"], encoder["onnx"], decoder["engine"]) == ("encoder.engine", "encoder.onnx", "decoder.engine")
    # the first decoder step feeds an empty past; opt is the timed step (16 source tokens, 15 cached); max the model's
    assert decoder["profiles"]["past_key_0"] == {"min": [1, 4, 0, 24], "opt": [1, 4, 15, 24], "max": [16, 4, 2048, 24]}
    assert encoder["profiles"]["input_ids"] == {"min": [1, 1], "opt": [1, 16], "max": [16, 2048]}
    assert decoder["profiles"]["decoder_input_ids"]["max"] == [16, 16]  # a verified draft block of up to 16 tokens
    record = json.loads((slm_jetson / "manifest.json").read_text())["extra"]["kits"]["tensorrt"]
    assert set(record["graphs"]) == {"encoder", "decoder"} and "no engine built" in record["verified"]
    readme = (slm_jetson / "TENSORRT.md").read_text()
    assert "`encoder.engine`, `decoder.engine`" in readme and "decoder `past_key_0`: min [1, 4, 0, 24]" in readme


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_build_script_builds_both_engines_with_their_profiles(slm_jetson, tmp_path):
    assert subprocess.run([BASH, "-n", str(slm_jetson / "build_engine.sh")]).returncode == 0
    fake = tmp_path / "trtexec"
    fake.write_text('#!/usr/bin/env bash\necho "&&&& RUNNING TensorRT.trtexec [TensorRT v100300]"\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    done = subprocess.run([BASH, str(slm_jetson / "build_engine.sh")], capture_output=True, text=True,
                          env={**os.environ, "TRTEXEC": str(fake), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    calls = [line[len("ARGS: "):].split() for line in done.stdout.splitlines() if line.startswith("ARGS: ")]
    assert [c[:2] for c in calls] == [["--onnx=encoder.onnx", "--saveEngine=encoder.engine"],
                                      ["--onnx=decoder.onnx", "--saveEngine=decoder.engine"]]
    min_shapes = next(a for a in calls[1] if a.startswith("--minShapes="))
    assert "past_key_0:1x4x0x24" in min_shapes and "encoder_attention_mask:1x1" in min_shapes


def test_build_engine_records_each_graph_engine(slm_jetson, tmp_path, monkeypatch):
    """build_engine.py's record step with a stand-in ``tensorrt`` (version only) for both graphs: both engines and
    their facts join the manifest under extra.tensorrt.engines and the bundle still verifies."""
    from edgekit.exporters import trt_build_engine as kit_script
    from edgekit.runtimes.bundle import read_bundle

    bundle = tmp_path / "copy"
    shutil.copytree(slm_jetson, bundle)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(kit_script, "gpu_name", lambda: "Orin (nvgpu)")
    configs = json.loads((bundle / "tensorrt.json").read_text())["graphs"]
    for graph, config in configs.items():
        kit_script.record(bundle, config, f"engine of {graph}".encode(), {"mean_rel_error": 1e-4, "passed": True})
    manifest = read_bundle(bundle).manifest  # verifies every sha256 and refuses unlisted files
    assert {"encoder.engine", "decoder.engine.json"} <= set(manifest.files)
    engines = manifest.extra["tensorrt"]["engines"]
    assert {g: e["file"] for g, e in engines.items()} == {"encoder": "encoder.engine", "decoder": "decoder.engine"}
    assert engines["decoder"]["gpu_name"] == "Orin (nvgpu)"
