"""LiteRT (TFLite) backend: run a ``.tflite`` file with ai-edge-litert's Interpreter (tflite-runtime when
only it is installed).

Callers pass and get floats: a full-int8 file's int8 inputs are quantized with the tensor's scale and
zero-point inside the session, its outputs dequantized. A file converted at batch 1 (litert-torch writes
static shapes) runs a larger batch one sample at a time: resizing a static-shape file's input ran without
error here but gave wrong numbers (a 0.65 error on a small CNN), so it is resized only when the file
itself marks the axis dynamic.

Example:
    >>> from edgekit.runtimes.litert import LiteRtSession   # doctest: +SKIP
    >>> session = LiteRtSession("model.tflite", threads=1)  # doctest: +SKIP
    >>> session.run(image)["output"].shape                   # doctest: +SKIP
    (1, 10)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import InputMismatchError, MissingDependencyError, ModelLoadError, UsageError
from .session import Session
from .spec import TensorSpec

__all__ = ["LiteRtSession", "interpreter_class", "quantize", "dequantize"]


def interpreter_class() -> tuple[type, Any, str]:
    """The Interpreter class, its module and the package name: ai-edge-litert, else tflite-runtime."""
    import importlib

    for module_name, package in (("ai_edge_litert.interpreter", "ai-edge-litert"),
                                 ("tflite_runtime.interpreter", "tflite-runtime")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, module, package
    raise MissingDependencyError("ai_edge_litert", "litert")


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Floats to the integer tensor type with ``scale`` and ``zero_point`` (round half to even, clipped).

    Example:
        >>> quantize(np.array([0.0, 0.5, 100.0]), 0.1, -3, np.int8).tolist()
        [-3, 2, 127]
    """
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float32) / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """The integer tensor back to float32.

    Example:
        >>> dequantize(np.array([-3, 2], np.int8), 0.1, -3).round(3).tolist()
        [0.0, 0.5]
    """
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


_DTYPES = {np.float32: "float32", np.float16: "float16", np.int8: "int8", np.uint8: "uint8",
           np.int32: "int32", np.int64: "int64", np.bool_: "bool"}


def _quant(detail: Mapping[str, Any]) -> tuple[float, int] | None:
    """(scale, zero_point) of a per-tensor quantized integer tensor, else None."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return float(scale), int(zero_point)
    return None


def _spec(detail: Mapping[str, Any], name: str, where: str) -> TensorSpec:
    dtype = _DTYPES.get(detail["dtype"])
    if dtype is None:
        raise ModelLoadError(f"{where}: tensor {name!r} has unsupported type {detail['dtype']}")
    if _quant(detail) is not None:
        dtype = "float32"  # callers pass floats; the session (de)quantizes
    signature = detail.get("shape_signature", detail["shape"])
    shape = tuple(int(d) if d >= 0 else f"{name}_dim{i}" for i, d in enumerate(signature))
    if len(shape) >= 2 and shape[0] == 1:
        shape = ("batch", *shape[1:])  # a batch-1 file runs any batch, one sample at a time
    return TensorSpec(name, shape, dtype)


def _ordered(named: Mapping[str, int]) -> list[tuple[str, int]]:
    """Signature entries in argument order (``args_2`` before ``args_10``)."""
    def key(item: tuple[str, int]):
        match = re.search(r"(\d+)$", item[0])
        return (int(match.group(1)) if match else -1, item[0])
    return sorted(named.items(), key=key)


class LiteRtSession(Session):
    """Run a ``.tflite`` file.

    ``threads``: interpreter threads (None: LiteRT's default); ``xnnpack``: False runs the built-in kernels
    without the XNNPACK delegate (int8 results differ slightly between the two); ``inputs``/``outputs``
    override the specs read from the file, in the file's signature order (a bundle passes its manifest's).
    """

    backend = "litert"

    def __init__(
        self,
        path: str | Path,
        *,
        threads: int | None = None,
        xnnpack: bool = True,
        inputs: Sequence[TensorSpec] | None = None,
        outputs: Sequence[TensorSpec] | None = None,
    ) -> None:
        interpreter, module, package = interpreter_class()
        path = Path(path)
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file")
        options: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
        if not xnnpack:
            options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._interpreter = interpreter(**options)
            self._interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError / RuntimeError with multi-line text
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise ModelLoadError(f"{path}: LiteRT cannot load it: {first}") from exc
        self.path, self.threads, self.xnnpack, self.package = path, threads, xnnpack, package
        in_details, out_details = self._io_details()
        where = str(path)
        file_inputs = tuple(_spec(d, n, where) for n, d in in_details)
        file_outputs = tuple(_spec(d, n, where) for n, d in out_details)
        for what, given, found in (("inputs", inputs, file_inputs), ("outputs", outputs, file_outputs)):
            if given is not None and len(given) != len(found):
                raise ModelLoadError(f"{path}: the file has {len(found)} {what}, the manifest lists {len(given)}")
        super().__init__(inputs or file_inputs, outputs or file_outputs)
        self._in = [d for _, d in in_details]
        self._out = [d for _, d in out_details]

    def _io_details(self) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
        """Input and output details by signature name, in argument order (details order without a signature)."""
        it = self._interpreter
        by_index = {d["index"]: d for d in it.get_input_details() + it.get_output_details()}
        full = getattr(it, "_get_full_signature_list", lambda: {})() or {}
        if len(full) == 1:
            (signature,) = full.values()
            return ([(n, by_index[i]) for n, i in _ordered(signature["inputs"])],
                    [(n, by_index[i]) for n, i in _ordered(signature["outputs"])])
        return ([(d["name"], d) for d in it.get_input_details()], [(d["name"], d) for d in it.get_output_details()])

    @property
    def quantized_io(self) -> bool:
        """Whether the file takes or gives int8 / uint8 tensors (the session converts them)."""
        return any(_quant(d) is not None for d in self._in + self._out)

    def _prepare(self, shapes: list[tuple[int, ...]]) -> None:
        """Resize inputs whose file shape marks the differing axes dynamic."""
        changed = False
        for detail, shape in zip(self._in, shapes):
            if tuple(detail["shape"]) != shape:
                self._interpreter.resize_tensor_input(detail["index"], list(shape))
                changed = True
        if changed:
            self._interpreter.allocate_tensors()
            self._in = [next(d for d in self._interpreter.get_input_details() if d["index"] == old["index"])
                        for old in self._in]

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        it = self._interpreter
        for detail, array in zip(self._in, arrays):
            params = _quant(detail)
            value = quantize(array, *params, detail["dtype"]) if params else np.asarray(array, detail["dtype"])
            it.set_tensor(detail["index"], np.ascontiguousarray(value))
        it.invoke()
        results = []
        for detail in self._out:
            value = it.get_tensor(detail["index"])
            params = _quant(detail)
            results.append(dequantize(value, *params) if params else value.copy())
        return results

    def _fits(self, shapes: list[tuple[int, ...]]) -> bool:
        """Whether the file takes these shapes directly (equal, or differing only on its dynamic axes)."""
        for detail, shape in zip(self._in, shapes):
            signature = detail.get("shape_signature", detail["shape"])
            if len(signature) != len(shape) or any(s >= 0 and s != n for s, n in zip(signature, shape)):
                return False
        return True

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [np.asarray(feeds[spec.name]) for spec in self.inputs]
        shapes = [tuple(a.shape) for a in arrays]
        if self._fits(shapes):
            self._prepare(shapes)
            values = self._invoke(arrays)
        elif all(s and s[0] == shapes[0][0] for s in shapes) and self._fits([(1, *s[1:]) for s in shapes]):
            # a static batch-1 file: one sample at a time, outputs stacked on the batch axis
            self._prepare([(1, *s[1:]) for s in shapes])
            parts = [self._invoke([a[i : i + 1] for a in arrays]) for i in range(shapes[0][0])]
            values = [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(self._out))]
        else:
            fixed = [tuple(int(d) for d in detail["shape"]) for detail in self._in]
            raise InputMismatchError(f"{self.path}: inputs of shapes {shapes} do not fit the file's {fixed} "
                                     "(it was converted with static shapes; only the batch may differ)")
        return {spec.name: value for spec, value in zip(self.outputs, values)}

    @property
    def raw(self):
        """The underlying LiteRT ``Interpreter``."""
        return self._interpreter
