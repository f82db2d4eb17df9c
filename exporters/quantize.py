"""Precision variants of an fp32 ONNX file: int8 static QDQ (onnxruntime.quantization) and fp16.

int8 uses onnxruntime's quantizer with a calibration data reader fed by the model family's data,
per-channel int8 weights, and QDQ format. Which activation type (uint8 / int8) and whether to use
``reduce_range`` is not assumed: :func:`quantize_int8` tries each candidate, measures its agreement
with fp32 and its latency on this host, and keeps the fastest one whose error is within reach of the
best (on AVX2 without VNNI, signed activations ran 1.6x slower and reduce_range cut error ~8x; on
other CPUs it differs). fp16 uses onnxruntime's own converter and keeps fp32 inputs and outputs.

Example:
    >>> import numpy as np, torch, tempfile, pathlib
    >>> from edgekit.exporters.onnx import export_onnx
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> spec = (TensorSpec("x", ("batch", 16)),)
    >>> _ = export_onnx(torch.nn.Linear(16, 4), spec, (torch.randn(1, 16),), tmp / "fp32.onnx")
    >>> feeds = [{"x": np.random.default_rng(i).standard_normal((1, 16)).astype("float32")} for i in range(8)]
    >>> result = quantize_int8(tmp / "fp32.onnx", tmp / "int8.onnx", feeds, spec, bench_runs=5)
    >>> result.chosen.activation_type in ("uint8", "int8")
    True
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import ExportError, require
from edgekit.runtimes.spec import TensorSpec

__all__ = ["Int8Candidate", "CandidateResult", "Int8Result", "quantize_int8", "convert_fp16", "INT8_CANDIDATES"]


@dataclass(frozen=True)
class Int8Candidate:
    activation_type: str  # "uint8" | "int8"
    reduce_range: bool

    @property
    def label(self) -> str:
        return f"act {self.activation_type}, reduce_range {'on' if self.reduce_range else 'off'}"


INT8_CANDIDATES: tuple[Int8Candidate, ...] = (
    Int8Candidate("uint8", True),
    Int8Candidate("uint8", False),
    Int8Candidate("int8", True),
    Int8Candidate("int8", False),
)


@dataclass(frozen=True)
class CandidateResult:
    candidate: Int8Candidate
    mean_rel_error: float  # mean over samples of ||int8 - fp32|| / ||fp32|| on the first output
    p50_ms: float  # measured on this host, 1 thread

    def to_json(self) -> dict[str, Any]:
        return {"activation_type": self.candidate.activation_type, "reduce_range": self.candidate.reduce_range,
                "mean_rel_error": self.mean_rel_error, "p50_ms_host": self.p50_ms}


@dataclass(frozen=True)
class Int8Result:
    path: Path
    chosen: Int8Candidate
    candidates: tuple[CandidateResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen.label, "candidates": [c.to_json() for c in self.candidates],
                "method": "onnxruntime static QDQ, per-channel int8 weights, MinMax calibration"}


class _Reader:
    """onnxruntime's CalibrationDataReader contract: ``get_next()`` returns a feed dict or None."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._index = 0

    def get_next(self):
        if self._index >= len(self._feeds):
            return None
        self._index += 1
        return dict(self._feeds[self._index - 1])

    def rewind(self) -> None:
        self._index = 0


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice through the root logger at WARNING; keep the CLI clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _relative_error(reference: Path, candidate: Path, feeds: Sequence[Mapping[str, np.ndarray]], inputs) -> float:
    from edgekit.runtimes.ort import OrtSession

    ref, test = OrtSession(reference, threads=1, inputs=inputs), OrtSession(candidate, threads=1, inputs=inputs)
    errors = []
    for feed in feeds:
        a = next(iter(ref.run(dict(feed)).values())).astype(np.float64)
        b = next(iter(test.run(dict(feed)).values())).astype(np.float64)
        errors.append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-12)))
    return float(np.mean(errors))


def _median_ms(path: Path, feed: Mapping[str, np.ndarray], inputs, runs: int) -> float:
    from edgekit.runtimes.ort import OrtSession
    from edgekit.targets.measure import measure_latency

    session = OrtSession(path, threads=1, inputs=inputs)
    return measure_latency(session, dict(feed), warmup=max(2, runs // 5), runs=runs).p50_ms


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[Mapping[str, np.ndarray]],
    inputs: Sequence[TensorSpec],
    *,
    candidates: Sequence[Int8Candidate] = INT8_CANDIDATES,
    error_slack: float = 1.5,
    bench_runs: int = 30,
) -> Int8Result:
    """Quantize with each candidate, then keep the fastest whose error <= ``error_slack`` x the best error.

    ``calibration`` yields feed dicts (a few dozen to a few hundred samples of real data).
    """
    quantization = require("onnxruntime.quantization", "export")
    feeds = list(calibration)
    if not feeds:
        raise ExportError("int8 quantization needs calibration samples; none were given")
    if not candidates:
        raise ExportError("int8 quantization needs at least one candidate configuration")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    evaluation = feeds[: min(len(feeds), 32)]
    types = {"uint8": quantization.QuantType.QUInt8, "int8": quantization.QuantType.QInt8}
    results: list[CandidateResult] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-") as tmp:
        paths = {}
        for index, candidate in enumerate(candidates):
            path = Path(tmp) / f"candidate{index}.onnx"
            try:
                with _quiet_root_logger():
                    quantization.quantize_static(
                        str(fp32_path), str(path), _Reader(feeds),
                        quant_format=quantization.QuantFormat.QDQ,
                        per_channel=True,
                        reduce_range=candidate.reduce_range,
                        activation_type=types[candidate.activation_type],
                        weight_type=quantization.QuantType.QInt8,
                    )
            except Exception as exc:
                raise ExportError(f"{fp32_path}: int8 quantization ({candidate.label}) failed: {exc}") from exc
            paths[candidate] = path
            results.append(CandidateResult(
                candidate, _relative_error(fp32_path, path, evaluation, inputs), _median_ms(path, feeds[0], inputs, bench_runs)
            ))
        best_error = min(r.mean_rel_error for r in results)
        eligible = [r for r in results if r.mean_rel_error <= best_error * error_slack + 1e-9]
        chosen = min(eligible, key=lambda r: r.p50_ms).candidate
        shutil.copyfile(paths[chosen], out_path)
    return Int8Result(out_path, chosen, tuple(results))


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Convert weights and compute to float16, keeping float32 inputs and outputs (Cast at the edges)."""
    onnx = require("onnx", "export")
    float16 = require("onnxruntime.transformers.float16", "export")
    model = onnx.load(str(fp32_path))
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise ExportError(f"{fp32_path}: fp16 conversion failed: {exc}") from exc
    onnx.save(converted, str(out_path))
    return Path(out_path)
