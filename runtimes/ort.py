"""onnxruntime backend.

Example:
    >>> from edgekit.runtimes.ort import OrtSession   # doctest: +SKIP
    >>> session = OrtSession("model.onnx", threads=1)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelLoadError, UsageError, one_line, require
from .session import Session
from .spec import TensorSpec

__all__ = ["OrtSession", "OPTIMIZATION_LEVELS"]

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _spec_from_ort(arg, where: str) -> TensorSpec:
    if arg.type not in _ORT_DTYPES:
        raise ModelLoadError(f"{where}: tensor {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) else (d or f"{arg.name}_dim{i}") for i, d in enumerate(arg.shape))
    return TensorSpec(arg.name, shape, _ORT_DTYPES[arg.type])


class OrtSession(Session):
    """Run an ONNX file with onnxruntime.

    ``threads`` sets intra-op threads (None: onnxruntime's default); ``optimization`` is one of
    OPTIMIZATION_LEVELS; ``inputs``/``outputs`` override the specs read from the file (a bundle passes
    its manifest's specs, whose dynamic axes carry names).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        optimization: str = "all",
        providers: Sequence[str] | None = None,
        inputs: Sequence[TensorSpec] | None = None,
        outputs: Sequence[TensorSpec] | None = None,
    ) -> None:
        ort = require("onnxruntime", "ort")
        path = Path(path)
        if optimization not in OPTIMIZATION_LEVELS:
            raise UsageError(f"optimization {optimization!r} is not one of {OPTIMIZATION_LEVELS}")
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file")
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph
            first = one_line(exc)
            raise ModelLoadError(f"{path}: onnxruntime cannot load it: {first}") from exc
        self.path = path
        self.threads = threads
        file_inputs = tuple(_spec_from_ort(a, str(path)) for a in self._session.get_inputs())
        file_outputs = tuple(_spec_from_ort(a, str(path)) for a in self._session.get_outputs())
        self.file_inputs, self.file_outputs = file_inputs, file_outputs  # what the file declares (load cross-checks)
        super().__init__(inputs or file_inputs, outputs or file_outputs)
        self._output_names = [spec.name for spec in self.outputs]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    @property
    def raw(self):
        """The underlying ``onnxruntime.InferenceSession`` (for profiling and IO binding)."""
        return self._session
