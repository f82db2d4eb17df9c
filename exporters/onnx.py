"""torch -> ONNX export, and a separate parity check of the exported file against torch.

:func:`export_onnx` writes the file; :func:`validate` runs it in onnxruntime on fresh random inputs and
raises :class:`ValidationError` above tolerance, so a wrong artifact is never saved silently.

Example:
    >>> import torch, tempfile, pathlib
    >>> from edgekit.runtimes.spec import TensorSpec
    >>> net = torch.nn.Linear(4, 2).eval()
    >>> spec = (TensorSpec("x", ("batch", 4)),)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.onnx"
    >>> art = export_onnx(net, spec, (torch.randn(1, 4),), path, output_names=("y",))
    >>> art.outputs[0].shape
    ('batch', 2)
    >>> validate(path, net, spec).passed
    True
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.errors import ExportError, ModelLoadError, require
from edgekit.runtimes.spec import Dim, TensorSpec

from .base import Artifact, BaseExporter, ExportGraph, ExportOptions
from .parity import ValidationReport, check_parity, flat_outputs, output_names_of, run_example, trial_sizes

__all__ = [
    "OnnxExportOptions",
    "OnnxArtifact",
    "ValidationReport",
    "export_onnx",
    "validate",
    "read_onnx_specs",
    "output_names_of",
    "run_example",
    "trial_sizes",
    "OnnxExporter",
]

LEGACY_MAX_OPSET = 20


@dataclass(frozen=True)
class OnnxExportOptions:
    """How to export. The legacy TorchScript exporter is the default (about 1 s for a small CNN);
    ``dynamo=True`` uses torch.export (about 13x slower here) and needs ``opset >= 18``."""

    opset: int = 17
    dynamo: bool = False
    constant_folding: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dynamo and self.opset < 18:
            raise ExportError(f"the dynamo exporter needs opset >= 18, got --opset {self.opset}")
        if not self.dynamo and not 9 <= self.opset <= LEGACY_MAX_OPSET:
            raise ExportError(f"opset {self.opset} is outside 9..{LEGACY_MAX_OPSET} for the TorchScript exporter")


@dataclass(frozen=True)
class OnnxArtifact:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int


_ONNX_DTYPES = {1: "float32", 10: "float16", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 9: "bool"}


def read_onnx_specs(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs of an ONNX file, dynamic dimensions keeping their names."""
    onnx = require("onnx", "export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    initializers = {init.name for init in model.graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or f"{value.name}_dim{i}")
            for i, d in enumerate(tensor_type.shape.dim)
        )
        dtype = _ONNX_DTYPES.get(tensor_type.elem_type)
        if dtype is None:
            raise ModelLoadError(f"{path}: tensor {value.name!r} has unsupported element type {tensor_type.elem_type}")
        return TensorSpec(value.name, dims, dtype)

    inputs = tuple(spec(v) for v in model.graph.input if v.name not in initializers)
    return inputs, tuple(spec(v) for v in model.graph.output)


@contextlib.contextmanager
def _quiet():
    """Silence stdout and stderr of Python *and* native code (torch's C++ logs write to file descriptors
    1 and 2, e.g. "Torch IR graph at exception: ..." from the TorchScript exporter), so that a failed
    export prints only edgekit's one-line error.

    Example:
        >>> with _quiet():
        ...     print("not shown")
    """
    import ctypes
    import os
    import sys
    import tempfile

    try:
        libc = ctypes.CDLL(None)
    except OSError:  # no C library handle (Windows): Python-level flushing only
        libc = None

    def flush() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if libc is not None:
            libc.fflush(None)  # native writes sit in C stdio's buffer until flushed

    flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _find_node(model, example_inputs: tuple, op: str) -> str:
    """Where in the module the unsupported op sits: scope and source line from a TorchScript trace."""
    import torch

    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            graph = torch.jit.trace(model, example_inputs, check_trace=False).inlined_graph
    except Exception:  # tracing is only a diagnostic aid here
        return "node not located"
    for node in graph.nodes():
        if node.kind() == op:
            scope = node.scopeName() or "<top>"
            source = str(node.sourceRange()).strip().splitlines()
            where = next((line.strip() for line in source if line.strip()), "")
            return f"node in {scope}" + (f" ({where})" if where else "")
    return "node not located"


def _axis_name(output: str, axis: int, sizes: list[int], trials: Sequence[Mapping[str, int]]) -> Dim:
    """An output axis: fixed when its size never changed, else the input axis it follows, else
    ``<output>_dim<axis>``."""
    if len(set(sizes)) == 1:
        return sizes[0]
    following = [name for name in trials[0] if [trial[name] for trial in trials] == sizes]
    if following:
        return "batch" if "batch" in following else following[0]
    return f"{output}_dim{axis}"


def _output_dims(model, inputs: Sequence[TensorSpec], example_inputs: tuple, names: Sequence[str]) -> list[tuple[Dim, ...]]:
    """Each output's shape with named dynamic axes, found by running ``model`` at :func:`trial_sizes`."""
    torch = require("torch", "export")
    trials = trial_sizes(inputs, example_inputs)
    shapes = []
    for sizes in trials:
        feeds = tuple(
            (torch.randn if ex.dtype.is_floating_point else torch.zeros)(spec.concrete(sizes), dtype=ex.dtype)
            for spec, ex in zip(inputs, example_inputs)
        )
        try:
            flat = flat_outputs(run_example(model, [s.name for s in inputs], feeds))
        except ExportError as exc:
            changed = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise ExportError(f"the model does not run with dynamic axes {changed}: {exc}") from exc
        shapes.append([tuple(value.shape) for _, value in flat])
    return [
        tuple(_axis_name(name, axis, [shape[i][axis] for shape in shapes], trials) for axis in range(len(shapes[0][i])))
        for i, name in enumerate(names)
    ]


def _set_output_dims(model_proto, names: Sequence[str], dims: Sequence[tuple[Dim, ...]]) -> None:
    """Write readable output shapes into the graph (the exporter leaves names like ``Resizeoutput_dim_1``)."""
    by_name = dict(zip(names, dims))
    for value in model_proto.graph.output:
        shape = by_name.get(value.name)
        if shape is None:
            continue
        tensor_shape = value.type.tensor_type.shape
        if len(tensor_shape.dim) != len(shape):
            tensor_shape.ClearField("dim")
            for _ in shape:
                tensor_shape.dim.add()
        for dim, want in zip(tensor_shape.dim, shape):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = int(want)


def export_onnx(
    model,
    inputs: Sequence[TensorSpec],
    example_inputs: tuple,
    path: str | Path,
    *,
    output_names: Sequence[str] | None = None,
    output_axes: Mapping[str, Mapping[int, str]] | None = None,
    options: OnnxExportOptions = OnnxExportOptions(),
) -> OnnxArtifact:
    """Export ``model`` (an eval-mode nn.Module) to ``path``; input dynamic axes come from ``inputs``.

    Output names default to :func:`output_names_of` the model's result (dict keys, in order). Output
    shapes, unless ``output_axes`` names them, come from running the model at :func:`trial_sizes`: an
    axis that follows an input axis takes its name (``batch``, ``height``), another that changes is
    ``<output>_dim<i>``, and one that never changes is fixed. Raises ExportError for an input that does
    not fit the model, a wrong number of output names, or an op the exporter cannot handle.
    """
    torch = require("torch", "export")
    onnx = require("onnx", "export")
    if options.dynamo:
        require("onnxscript", "dynamo")  # torch's dynamo exporter imports it on first use
    path = Path(path)
    model.eval()
    names = [spec.name for spec in inputs]
    own_names = output_names_of(run_example(model, names, tuple(example_inputs)))
    output_names = tuple(own_names if output_names is None else output_names)
    if len(output_names) != len(own_names):
        raise ExportError(f"output names {list(output_names)}: the model returns {len(own_names)} outputs ({', '.join(own_names)})")
    axes = {spec.name: spec.dynamic_axes for spec in inputs if spec.dynamic_axes}
    out_dims = None
    if output_axes is None:
        out_dims = _output_dims(model, inputs, tuple(example_inputs), output_names)
        output_axes = {name: {i: d for i, d in enumerate(dims) if isinstance(d, str)} for name, dims in zip(output_names, out_dims)}
    axes.update({name: dict(a) for name, a in output_axes.items() if a})
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(example_inputs),
                str(path),
                input_names=names,
                output_names=list(output_names),
                dynamic_axes=axes or None,
                opset_version=options.opset,
                do_constant_folding=options.constant_folding,
                dynamo=options.dynamo,
            )
    except Exception as exc:
        text = str(exc)
        match = re.search(r"operator '([^']+)'", text)
        if match:
            op = match.group(1)
            where = _find_node(model, tuple(example_inputs), op)
            raise ExportError(
                f"op {op} cannot be exported to ONNX opset {options.opset} ({where}); "
                "try another --opset or replace the op"
            ) from exc
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise ExportError(f"ONNX export failed: {first}") from exc
    model_proto = onnx.load(str(path))
    if out_dims is not None:
        _set_output_dims(model_proto, output_names, out_dims)
    for key, value in options.metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.save(model_proto, str(path))
    file_inputs, file_outputs = read_onnx_specs(path)
    # The exporter may drop inputs the graph does not use; keep the caller's specs for those it kept.
    by_name = {spec.name: spec for spec in inputs}
    kept_inputs = tuple(by_name.get(spec.name, spec) for spec in file_inputs)
    opset = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), options.opset)
    return OnnxArtifact(path, kept_inputs, file_outputs, opset)


def validate(
    onnx_path: str | Path,
    model,
    inputs: Sequence[TensorSpec],
    *,
    feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    sizes: Sequence[Mapping[str, int]] = ({}, {"batch": 2}),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    seed: int = 0,
    session_factory: Callable[[Path], Any] | None = None,
) -> ValidationReport:
    """Compare the ONNX file with ``model`` on fresh random inputs; raise ValidationError above tolerance.

    An element fails when ``|onnx - torch| > atol + rtol * |torch|``. Trials use each mapping of
    dynamic-axis sizes in ``sizes`` (unnamed axes default to 1), or the explicit ``feeds``.
    """
    from edgekit.runtimes import load_file

    onnx_path = Path(onnx_path)
    session = session_factory(onnx_path) if session_factory else load_file(onnx_path, "onnx", inputs=inputs)
    return check_parity(session, model, inputs, feeds=feeds, trials=sizes, atol=atol, rtol=rtol, seed=seed,
                        where=str(onnx_path))


class OnnxExporter(BaseExporter):
    """The ONNX format's exporter: :func:`export_onnx`, then fp16 / int8 variants of the fp32 file
    (:mod:`edgekit.exporters.quantize`); validation runs the file in the format's runtime backend."""

    format = "onnx"

    def describe(self, options: ExportOptions) -> str:
        return f"opset {options.opset}"

    def export(self, graph: ExportGraph, path: Path, options: ExportOptions) -> Artifact:
        onnx_options = OnnxExportOptions(opset=options.opset, dynamo=options.dynamo, metadata=options.metadata)
        artifact = export_onnx(graph.module, graph.inputs, graph.example_inputs, path,
                               output_names=graph.output_names, output_axes=graph.output_axes, options=onnx_options)
        exporter = "torch.onnx (dynamo)" if options.dynamo else "torch.onnx (TorchScript)"
        return Artifact(artifact.path, artifact.inputs, artifact.outputs, {"exporter": exporter, "opset": artifact.opset})

    def write_variant(self, fp32_path: Path, out_path: Path, precision: str, inputs: Sequence[TensorSpec],
                      int8_calibration: Sequence[Mapping[str, np.ndarray]] = ()) -> dict[str, Any]:
        from .quantize import convert_fp16, quantize_int8

        if precision == "int8":
            return quantize_int8(fp32_path, out_path, int8_calibration, inputs).to_json()
        if precision == "fp16":
            convert_fp16(fp32_path, out_path)
            return {}
        raise ExportError(f"--precision {precision}: the ONNX exporter writes fp16 and int8 variants of an fp32 file")
