"""TensorRT backend: run an engine built on the device by the bundle's kit (``build_engine.py``).

An engine only runs on the GPU model and TensorRT version it was built with. The kit writes the build's
facts beside the engine (``model.engine.json``: TensorRT version, GPU name, size, sha256);
:func:`check_engine_facts` refuses an engine whose facts do not match this device, naming both, before
TensorRT sees it, and a truncated or altered file by its size and sha256. Needs ``tensorrt`` (JetPack) and
``polygraphy`` (extra ``[tensorrt]``); written against their documented APIs and not run here (TensorRT
cannot be installed on the export host).

Example:
    >>> facts = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "bytes": 4}
    >>> check_engine_facts(facts, b"1234", tensorrt_version="10.3.0", gpu="Orin", where="m.engine")
    >>> check_engine_facts(facts, b"1234", tensorrt_version="10.7.0", gpu="Orin", where="m.engine")
    Traceback (most recent call last):
    ...
    edgekit.runtimes.errors.ModelLoadError: m.engine: built with TensorRT 10.3.0 for Orin; this device has TensorRT 10.7.0 and Orin: rebuild it here with the bundle's build_engine.py
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ModelLoadError, require
from .session import Session
from .spec import TensorSpec

__all__ = ["TensorRTSession", "check_engine_facts", "read_engine_facts", "gpu_name"]


def gpu_name() -> str:
    """This device's GPU name: ``nvidia-smi``'s, else the board's model (Jetson), else ``unknown``."""
    try:
        lines = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=20, check=True).stdout.strip().splitlines()
        if lines:
            return lines[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    model = Path("/proc/device-tree/model")
    return model.read_text(errors="replace").strip("\x00 \n") if model.exists() else "unknown"


def read_engine_facts(path: Path) -> dict[str, Any]:
    """The build facts the kit wrote beside ``path`` (``<engine>.json``)."""
    facts_path = path.with_name(path.name + ".json")
    if not facts_path.is_file():
        raise ModelLoadError(f"{path}: no {facts_path.name} beside it (the TensorRT version and GPU it was built for); "
                             "build it with the bundle's build_engine.py")
    try:
        facts = json.loads(facts_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{facts_path}: not valid JSON ({exc})") from exc
    if not isinstance(facts, dict) or not all(isinstance(facts.get(k), str) for k in ("tensorrt_version", "gpu_name")):
        raise ModelLoadError(f"{facts_path}: expected an object with 'tensorrt_version' and 'gpu_name' strings")
    return facts


def check_engine_facts(facts: Mapping[str, Any], data: bytes, *, tensorrt_version: str, gpu: str, where: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU (naming both), or a truncated / altered file.

    Example:
        >>> check_engine_facts({"tensorrt_version": "10.3.0", "gpu_name": "Orin", "bytes": 9}, b"12", tensorrt_version="10.3.0",
        ...                    gpu="Orin", where="m.engine")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: m.engine: 2 bytes, the build wrote 9 (truncated or replaced); copy it again or rebuild it
    """
    expected = facts.get("bytes")
    if isinstance(expected, int) and expected != len(data):
        raise ModelLoadError(f"{where}: {len(data)} bytes, the build wrote {expected} (truncated or replaced); "
                             "copy it again or rebuild it")
    digest = facts.get("sha256")
    if isinstance(digest, str) and hashlib.sha256(data).hexdigest() != digest:
        raise ModelLoadError(f"{where}: its sha256 differs from the build's (altered); copy it again or rebuild it")
    built_version, built_gpu = facts["tensorrt_version"], facts["gpu_name"]
    if built_version != tensorrt_version or built_gpu != gpu:
        raise ModelLoadError(f"{where}: built with TensorRT {built_version} for {built_gpu}; this device has "
                             f"TensorRT {tensorrt_version} and {gpu}: rebuild it here with the bundle's build_engine.py")


class TensorRTSession(Session):
    """Run a serialized TensorRT engine with numpy in and out (polygraphy's TrtRunner moves the buffers)."""

    backend = "tensorrt"

    def __init__(self, path: str | Path, *, inputs: Sequence[TensorSpec] | None = None,
                 outputs: Sequence[TensorSpec] | None = None, **_: Any) -> None:
        trt = require("tensorrt", "tensorrt")
        runners = require("polygraphy.backend.trt", "tensorrt")
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such engine file")
        data = path.read_bytes()
        check_engine_facts(read_engine_facts(path), data, tensorrt_version=trt.__version__, gpu=gpu_name(),
                           where=str(path))
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
        if engine is None:
            raise ModelLoadError(f"{path}: TensorRT {trt.__version__} cannot deserialize it")
        file_specs: dict[bool, list[TensorSpec]] = {True: [], False: []}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(d if d >= 0 else f"{name}_dim{i}" for i, d in enumerate(engine.get_tensor_shape(name)))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            file_specs[engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT].append(TensorSpec(name, shape, dtype))
        self.path = path
        self._runner = runners.TrtRunner(engine)
        self._runner.activate()
        super().__init__(inputs or file_specs[True], outputs or file_specs[False])

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._runner.infer(dict(feeds))
        return {spec.name: np.asarray(results[spec.name]) for spec in self.outputs}

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None and getattr(runner, "is_active", False):
            runner.deactivate()
