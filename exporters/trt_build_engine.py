"""Build a TensorRT engine from this bundle's ONNX on the device, check it against onnxruntime, add it to the bundle.

This file is copied into a bundle as ``build_engine.py`` by ``edgekit export --target jetson``; it reads the
kit's ``tensorrt.json`` beside it and needs only ``tensorrt``, ``numpy``, ``onnxruntime`` and ``polygraphy``
on the device (not edgekit). Written against the documented TensorRT Python API (builder, network from the
ONNX parser, builder config, optimisation profiles, serialized network); TensorRT 11 builds strongly typed
networks (precision from the ONNX's QDQ nodes and casts), TensorRT 10 takes the FP16 / INT8 builder flags.

    python3 build_engine.py                # build model.engine, validate it, record it in manifest.json
    python3 build_engine.py --skip-build   # validate an engine built by build_engine.sh (trtexec)

A kit of several graphs (an encoder-decoder LM: ``{"graphs": {"encoder": plan, "decoder": plan}}`` in
tensorrt.json) builds, validates and records one engine per graph.

Importing this module does nothing (edgekit's doctest run imports it); ``main`` does the work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

KIT_CONFIG = "tensorrt.json"


def _tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def gpu_name() -> str:
    """The GPU's name as edgekit's TensorRT runtime reads it (edgekit.runtimes.tensorrt.gpu_name when edgekit is
    installed; the same two sources otherwise, so the recorded name matches what the runtime checks)."""
    try:
        from edgekit.runtimes.tensorrt import gpu_name as edgekit_gpu_name
    except ImportError:
        pass
    else:
        return edgekit_gpu_name()
    try:
        lines = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20, check=True).stdout.strip().splitlines()
        if lines:
            return lines[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    model = Path("/proc/device-tree/model")
    return model.read_text(errors="replace").strip("\x00 \n") if model.exists() else "unknown"


def build(kit: Path, config: dict[str, Any]) -> bytes:
    """Build and serialize the engine with the TensorRT Python API; returns its bytes."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = _tensorrt_major(trt.__version__)
    flags = 0
    if major >= 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(kit / config["onnx"])):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise SystemExit(f"{config['onnx']}: the TensorRT ONNX parser failed: {'; '.join(errors)}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config["workspace_mb"]) << 20)
    if major < 11:  # TensorRT 11 removed the precision flags: strongly typed networks take it from the ONNX
        if config["precision"] in ("fp16", "int8"):
            builder_config.set_flag(trt.BuilderFlag.FP16)
        if config["precision"] == "int8":
            builder_config.set_flag(trt.BuilderFlag.INT8)
    if config.get("sparsity"):
        builder_config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if config.get("dla_core") is not None:
        builder_config.default_device_type = trt.DeviceType.DLA
        builder_config.DLA_core = int(config["dla_core"])
        builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if config["profiles"]:
        profile = builder.create_optimization_profile()
        for name, shapes in config["profiles"].items():
            profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
        builder_config.add_optimization_profile(profile)
    cache_path = kit / config["timing_cache"]
    cache = builder_config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    builder_config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise SystemExit(f"{config['onnx']}: TensorRT could not build an engine (see the log above)")
    cache_path.write_bytes(memoryview(builder_config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized))


def _feeds(config: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    feeds = {}
    for spec in config["inputs"]:
        shape = config["profiles"].get(spec["name"], {}).get("opt") or spec["shape"]
        if spec["dtype"].startswith("float"):
            feeds[spec["name"]] = rng.standard_normal(shape).astype(spec["dtype"])
        else:
            feeds[spec["name"]] = rng.integers(0, 2, size=shape).astype(spec["dtype"])
    return feeds


def validate(kit: Path, config: dict[str, Any], engine: bytes) -> dict[str, Any]:
    """Run the engine (polygraphy's TrtRunner) and the ONNX (onnxruntime, CPU) on the same inputs; compare."""
    import numpy as np
    import onnxruntime as ort
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    feeds = _feeds(config)
    session = ort.InferenceSession(str(kit / config["onnx"]), providers=["CPUExecutionProvider"])
    reference = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    with TrtRunner(EngineFromBytes(engine)) as runner:
        got = runner.infer(feeds)
    worst, rel = 0.0, 0.0
    for name, ref in reference.items():
        out = np.asarray(got[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        diff = np.abs(out - ref)
        worst = max(worst, float(diff.max(initial=0.0)))
        rel = max(rel, float(diff.mean() / max(np.abs(ref).mean(), 1e-12)))
    limit = float(config["max_rel_error"])
    return {"against": "onnxruntime CPU on the bundle's ONNX", "max_abs_error": worst, "mean_rel_error": rel,
            "max_rel_error": limit, "passed": rel <= limit}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(tmp, path)


def record(kit: Path, config: dict[str, Any], engine: bytes, validation: dict[str, Any]) -> dict[str, Any]:
    """Write the engine and its facts; list them (with sha256) in the bundle's manifest.json."""
    import tensorrt as trt

    engine_path = kit / config["engine"]
    _write(engine_path, engine)
    facts = {"tensorrt_version": trt.__version__, "gpu_name": gpu_name(), "precision": config["precision"],
             "unit": config["unit"], "bytes": len(engine), "sha256": hashlib.sha256(engine).hexdigest(),
             "validation": validation}
    facts_path = engine_path.with_name(engine_path.name + ".json")
    _write(facts_path, (json.dumps(facts, indent=2) + "\n").encode())
    manifest_path = kit / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        for path in (engine_path, facts_path, kit / config["timing_cache"]):
            if path.exists():
                manifest["files"][path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        entry = {"file": engine_path.name, **{k: v for k, v in facts.items() if k not in ("bytes", "sha256")}}
        tensorrt = manifest.setdefault("extra", {}).setdefault("tensorrt", {})
        if config.get("graph"):
            tensorrt.setdefault("engines", {})[config["graph"]] = entry
        else:
            tensorrt["engine"] = entry
        _write(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path(__file__).resolve().parent, help="the bundle directory")
    parser.add_argument("--skip-build", action="store_true", help="validate and record an engine built already")
    args = parser.parse_args(argv)
    kit_config = json.loads((args.kit / KIT_CONFIG).read_text())
    configs = list(kit_config["graphs"].values()) if "graphs" in kit_config else [kit_config]
    return max(_build_one(args.kit, config, args.skip_build) for config in configs)


def _build_one(kit: Path, config: dict[str, Any], skip_build: bool) -> int:
    """Build (or take the built) engine of one plan, validate it, record it; 0 on success."""
    engine_path = kit / config["engine"]
    if skip_build:
        if not engine_path.exists():
            raise SystemExit(f"{engine_path}: no engine to validate (run build_engine.sh or drop --skip-build)")
        engine = engine_path.read_bytes()
    else:
        engine = build(kit, config)
    validation = validate(kit, config, engine)
    error = f"mean relative error {validation['mean_rel_error']:.3g} (limit {validation['max_rel_error']:g})"
    if not validation["passed"]:
        print(f"{engine_path.name}: validation FAILED against onnxruntime: {error}; not recorded", file=sys.stderr)
        return 1
    facts = record(kit, config, engine, validation)
    print(f"{engine_path.name}: TensorRT {facts['tensorrt_version']} on {facts['gpu_name']}; validation passed: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
