"""The TensorRT build kit (exporters/tensorrt.py, exporters/trt_build_engine.py) and the TensorRT runtime's
checks (runtimes/tensorrt.py): everything that runs without TensorRT, which cannot be installed here.

What runs: kit generation through ``edgekit export --target jetson``, ``bash -n``, byte-compiling
build_engine.py, build_engine.sh against a fake trtexec that echoes its arguments (TensorRT 10, 11, DLA on
11.2), the flags per unit and precision, the ONNX fed to TensorRT (symmetric QDQ) against the bundle's in
onnxruntime, recording an engine in the manifest with a stand-in ``tensorrt`` module, and the refusal of an
engine built for another GPU or TensorRT version.
"""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgekit.cli import main
from edgekit.exporters.tensorrt import (KIT_FILES, BuildPlan, build_script, has_2to4_sparsity, plan_build,
                                        shape_flags, symmetric_qdq, trtexec_flags)
from edgekit.runtimes.errors import MissingDependencyError, ModelLoadError
from edgekit.runtimes.spec import TensorSpec
from edgekit.targets import load_target

TINY = "tests.fixtures.tiny_models:tiny_cnn"
BASH = shutil.which("bash")


def _export(capsys, out: Path, *args: str) -> tuple[dict, str]:
    code = main(["export", "--model", TINY, "--target", "jetson", "--out", str(out), "--bench-runs", "0", *args])
    shown = capsys.readouterr().out
    assert code == 0, shown
    return json.loads((out / "manifest.json").read_text()), shown


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trt") / "D"
    assert main(["export", "--model", TINY, "--target", "jetson", "--out", str(out), "--bench-runs", "0"]) == 0
    return out


def test_jetson_export_writes_the_onnx_and_the_kit_listed_in_the_manifest(jetson_bundle, capsys):
    manifest = json.loads((jetson_bundle / "manifest.json").read_text())
    assert manifest["format"] == "onnx" and set(manifest["files"]) == {"model.onnx", *KIT_FILES}
    kit = manifest["extra"]["kits"]["tensorrt"]
    assert kit["unit"] == "gpu" and kit["onnx"] == "model.onnx" and kit["dla_core"] is None
    assert kit["trtexec_flags"] == {"10": [], "11": ["--stronglyTyped"]}
    assert kit["profiles"] == {"input": {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [8, 3, 16, 16]}}
    plan = json.loads((jetson_bundle / "tensorrt.json").read_text())
    assert plan["engine"] == "model.engine" and plan["max_rel_error"] == 1e-3 and plan["inputs"][0]["name"] == "input"
    assert os.stat(jetson_bundle / "build_engine.sh").st_mode & stat.S_IXUSR
    readme = (jetson_bundle / "TENSORRT.md").read_text()
    assert "bash build_engine.sh" in readme and "python3 build_engine.py" in readme
    assert "What was and was not verified" in readme and "Not verified: building or running an engine" in readme
    # the bundle stays an ONNX bundle that onnxruntime runs here
    from edgekit import runtimes

    session = runtimes.load(jetson_bundle)
    assert session.backend == "onnxruntime"
    assert next(iter(session.run({"input": np.zeros((1, 3, 16, 16), np.float32)}).values())).shape == (1, 5)


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_kit_scripts_parse_and_compile(jetson_bundle, tmp_path):
    assert subprocess.run([BASH, "-n", str(jetson_bundle / "build_engine.sh")]).returncode == 0
    py_compile.compile(str(jetson_bundle / "build_engine.py"), cfile=str(tmp_path / "b.pyc"), doraise=True)


def _fake_trtexec(directory: Path, version: int) -> Path:
    fake = directory / "trtexec"
    fake.write_text(f'#!/usr/bin/env bash\necho "&&&& RUNNING TensorRT.trtexec [TensorRT v{version}] # trtexec $*"\n'
                    'echo "ARGS: $*"\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("version, unit, precision, expected, code", [
    (100300, "gpu", "fp16", ["--fp16"], 0),
    (100300, "gpu", "int8", ["--int8", "--fp16"], 0),
    (110000, "gpu", "int8", ["--stronglyTyped"], 0),
    (100300, "dla1", "fp16", ["--fp16", "--useDLACore=1", "--allowGPUFallback"], 0),
    (110200, "dla0", "int8", None, 2),  # TensorRT 11.0-11.3 has no DLA: refused before trtexec runs
    (110401, "dla0", "int8", ["--stronglyTyped", "--useDLACore=0", "--allowGPUFallback"], 0),
    (8601, "gpu", "fp16", None, 2),  # TensorRT 8.6.1 prints v8601: not what the kit is written for
])
def test_build_script_picks_flags_from_the_installed_trtexec_version(tmp_path, version, unit, precision, expected, code):
    plan = plan_build(load_target("jetson-agx-orin"), unit, precision, [TensorSpec("x", ("batch", 3, 8, 8))], {"batch": 2})
    script = tmp_path / "build_engine.sh"
    script.write_text(build_script(plan))
    env = {**os.environ, "TRTEXEC": str(_fake_trtexec(tmp_path, version)), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([BASH, str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == code, done.stderr
    if expected is None:
        assert "build_engine.sh: TensorRT" in done.stderr
        return
    (args,) = [line[len("ARGS: "):].split() for line in done.stdout.splitlines() if line.startswith("ARGS: ")]
    shapes = ["--minShapes=x:2x3x8x8", "--optShapes=x:2x3x8x8", "--maxShapes=x:2x3x8x8"] if unit.startswith("dla") else \
        ["--minShapes=x:1x3x8x8", "--optShapes=x:2x3x8x8", "--maxShapes=x:16x3x8x8"]
    assert args == ["--onnx=model.onnx", "--saveEngine=model.engine", "--memPoolSize=workspace:1024M",
                    "--timingCacheFile=timing.cache", *shapes, *expected]


def test_flags_per_unit_and_precision():
    target = load_target("jetson-agx-orin")
    spec = [TensorSpec("x", (1, 3, 8, 8))]
    assert trtexec_flags(plan_build(target, None, "fp32", spec, {}), 10) == []
    assert trtexec_flags(plan_build(target, "gpu", "fp16", spec, {}), 10) == ["--fp16"]
    assert trtexec_flags(plan_build(target, "dla0", "int8", spec, {}), 10) == ["--int8", "--fp16", "--useDLACore=0",
                                                                                 "--allowGPUFallback"]
    assert shape_flags(plan_build(target, "gpu", "fp32", spec, {})) == []  # static shapes: no profile
    with pytest.raises(Exception, match="unit dla0 of jetson-agx-orin runs fp16, int8"):
        plan_build(target, "dla0", "fp32", spec, {})
    with pytest.raises(Exception, match="--unit cpu: runs onnxruntime, not tensorrt"):
        plan_build(target, "cpu", "fp32", spec, {})


def test_2to4_sparsity_is_detected_and_enables_the_flag():
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    def model(weight):
        graph = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 4, 4])],
                             [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 4, 4])], [nh.from_array(weight, "w")])
        return h.make_model(graph)

    sparse = np.zeros((4, 8, 1, 1), np.float32)
    sparse[:, [0, 3, 5, 6]] = 1.0  # two nonzeros in each group of four input channels
    assert has_2to4_sparsity(model(sparse))
    assert not has_2to4_sparsity(model(np.ones((4, 8, 1, 1), np.float32)))
    plan = BuildPlan("jetson", "gpu", "fp16", "model.onnx", sparsity=True)
    assert trtexec_flags(plan, 10) == ["--fp16", "--sparsity=enable"]


def test_int8_kit_feeds_tensorrt_a_symmetric_qdq_onnx_that_matches_the_bundle(jetson_bundle, tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    from edgekit.runtimes.ort import OrtSession

    out = tmp_path / "D"
    manifest, _ = _export(capsys, out, "--precision", "int8")
    kit = manifest["extra"]["kits"]["tensorrt"]
    assert kit["trtexec_flags"]["10"] == ["--int8", "--fp16"]
    fed = out / kit["onnx"]
    assert fed.name in manifest["files"] and json.loads((out / "tensorrt.json").read_text())["onnx"] == fed.name
    model = onnx.load(str(fed))
    onnx.checker.check_model(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any() for n in qdq)  # zero point 0
    assert all(inits[n.input[0]].dtype == np.int8 for n in qdq if n.input[0] in inits)  # no int32 bias DQ
    x = np.random.default_rng(0).standard_normal((64, 3, 16, 16)).astype(np.float32)

    def run(path):
        return next(iter(OrtSession(path).run({"input": x}).values()))

    fp32, bundle_int8, trt_int8 = run(jetson_bundle / "model.onnx"), run(out / "model.onnx"), run(fed)

    def rel(a):
        return float(np.abs(a - fp32).mean() / np.abs(fp32).mean())

    # measured: bundle int8 0.6% from fp32, the symmetric copy 1.0% (coarser steps for one-sided ranges)
    assert rel(bundle_int8) < 0.02 and rel(trt_int8) < 3 * rel(bundle_int8) + 0.005, (rel(bundle_int8), rel(trt_int8))
    assert (trt_int8.argmax(1) == fp32.argmax(1)).mean() >= 0.95


def test_symmetric_qdq_requantizes_a_constant_asymmetric_tensor():
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh
    from onnx.reference import ReferenceEvaluator

    q = np.array([0, 100, 200, 255], np.uint8)
    inits = [nh.from_array(q, "w"), nh.from_array(np.array(0.02, np.float32), "s"), nh.from_array(np.array(50, np.uint8), "z")]
    graph = h.make_graph([h.make_node("DequantizeLinear", ["w", "s", "z"], ["y"])], "g", [],
                         [h.make_tensor_value_info("y", T.FLOAT, [4])], inits)
    before = ReferenceEvaluator(h.make_model(graph)).run(None, {})[0]
    model, count = symmetric_qdq(h.make_model(graph))
    after = ReferenceEvaluator(model).run(None, {})[0]
    assert count == 1 and np.allclose(before, [-1.0, 1.0, 3.0, 4.1], atol=1e-6)
    assert np.abs(after - before).max() <= 0.02 * (255 - 50) / 127 / 2 + 1e-6  # within half an int8 step


def _bundle_copy(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    return out


def test_build_engine_records_the_engine_and_the_runtime_checks_it(jetson_bundle, tmp_path, monkeypatch):
    """build_engine.py's record step with a stand-in ``tensorrt`` module (version only): the engine, its facts and
    the timing cache join the manifest, the bundle still verifies, and the runtime's check accepts the engine on
    the same GPU and TensorRT and refuses it, naming both, elsewhere."""
    from edgekit.exporters import trt_build_engine as kit_script
    from edgekit.runtimes.bundle import read_bundle
    from edgekit.runtimes.tensorrt import check_engine_facts, read_engine_facts

    bundle = _bundle_copy(jetson_bundle, tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(kit_script, "gpu_name", lambda: "Orin (nvgpu)")
    (bundle / "timing.cache").write_bytes(b"cache")
    config = json.loads((bundle / "tensorrt.json").read_text())
    engine = b"\x00serialized-engine" * 10
    validation = {"mean_rel_error": 2e-4, "max_rel_error": 1e-3, "passed": True}
    facts = kit_script.record(bundle, config, engine, validation)
    manifest = read_bundle(bundle).manifest  # verifies every sha256 and refuses unlisted files
    assert {"model.engine", "model.engine.json", "timing.cache"} <= set(manifest.files)
    assert manifest.extra["tensorrt"]["engine"]["tensorrt_version"] == "10.3.0"
    assert manifest.extra["tensorrt"]["engine"]["gpu_name"] == "Orin (nvgpu)"
    read = read_engine_facts(bundle / "model.engine")
    assert read == facts and read["bytes"] == len(engine)
    data = (bundle / "model.engine").read_bytes()
    check_engine_facts(read, data, tensorrt_version="10.3.0", gpu="Orin (nvgpu)", where="model.engine")
    with pytest.raises(ModelLoadError, match=r"built with TensorRT 10\.3\.0 for Orin \(nvgpu\); this device has "
                                             r"TensorRT 10\.7\.0 and NVIDIA A100: rebuild it here"):
        check_engine_facts(read, data, tensorrt_version="10.7.0", gpu="NVIDIA A100", where="model.engine")
    with pytest.raises(ModelLoadError, match="truncated or replaced"):
        check_engine_facts(read, data[:-5], tensorrt_version="10.3.0", gpu="Orin (nvgpu)", where="model.engine")
    with pytest.raises(ModelLoadError, match="sha256 differs"):
        check_engine_facts(read, data[::-1], tensorrt_version="10.3.0", gpu="Orin (nvgpu)", where="model.engine")


def test_engine_without_its_facts_or_without_tensorrt_is_refused_clearly(tmp_path):
    from edgekit.runtimes import load_file
    from edgekit.runtimes.tensorrt import read_engine_facts

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="no model.engine.json beside it"):
        read_engine_facts(engine)
    (tmp_path / "model.engine.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_engine_facts(engine)
    with pytest.raises(MissingDependencyError, match=r"tensorrt"):  # TensorRT is not installable here
        load_file(engine)
