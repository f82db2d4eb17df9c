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

from edgekit.runtimes.errors import ExportError, ModelLoadError, ValidationError, require
from edgekit.runtimes.spec import Dim, TensorSpec, random_inputs

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


@dataclass(frozen=True)
class ValidationReport:
    """Largest absolute and relative error per output over every trial; ``passed`` against tolerance."""

    atol: float
    rtol: float
    trials: int
    max_abs: Mapping[str, float]
    max_rel: Mapping[str, float]
    passed: bool

    @property
    def worst_abs(self) -> float:
        return max(self.max_abs.values(), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "trials": self.trials,
            "max_abs_error": dict(self.max_abs),
            "max_rel_error": dict(self.max_rel),
            "passed": self.passed,
        }


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


def _flat_items(result, name: str = "output") -> list[tuple[str, Any]]:
    """A model's outputs as ``(name, tensor)`` in the order torch.onnx.export writes them: dict keys name
    their values, sequence items are numbered, ``None`` is dropped."""
    if isinstance(result, Mapping):
        items = [(str(key), value) for key, value in result.items()]
    elif isinstance(result, (tuple, list)):
        items = [(f"{name}_{i}", value) for i, value in enumerate(result)]
    else:
        return [(name, result)]
    flat: list[tuple[str, Any]] = []
    for key, value in items:
        if value is not None:
            flat.extend(_flat_items(value, key) if isinstance(value, (Mapping, tuple, list)) else [(key, value)])
    return flat


def output_names_of(result) -> tuple[str, ...]:
    """Names for a model's outputs: dict keys (in order), ``output_0, output_1, ...`` for a tuple, or
    ``output`` for one tensor.

    Example:
        >>> import torch
        >>> output_names_of({"logits": torch.zeros(1), "embedding": torch.zeros(1)})
        ('logits', 'embedding')
        >>> output_names_of((torch.zeros(1), torch.zeros(1)))
        ('output_0', 'output_1')
    """
    return tuple(name for name, _ in _flat_items(result))


def run_example(model, names: Sequence[str], example_inputs: tuple):
    """Run ``model`` on its example inputs (no grad); ExportError names the shapes when they do not fit.

    Example:
        >>> import torch
        >>> run_example(torch.nn.Linear(4, 2), ["x"], (torch.zeros(1, 4),)).shape
        torch.Size([1, 2])
    """
    torch = require("torch", "export")
    try:
        with torch.no_grad():
            return model(*example_inputs)
    except Exception as exc:
        shapes = ", ".join(f"{n}={tuple(t.shape)}" for n, t in zip(names, example_inputs))
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"input shape {shapes} does not fit the model: {message}") from exc


def _other_size(size: int, k: int) -> int:
    """The k-th dynamic axis at another size that keeps its power-of-two divisibility (up to 32), so
    that models which downsample and concatenate skips still run, and two axes never move together."""
    step = min(size & -size, 32)
    return size + (k + 1) * step


def trial_sizes(inputs: Sequence[TensorSpec], example_inputs: Sequence[Any]) -> tuple[dict[str, int], ...]:
    """Named-axis sizes to try a model at: the example's with batch 1, batch 2, and (when other axes such
    as height/width are dynamic) every other axis at another size; the example's twice (two random
    draws) when nothing is dynamic.

    Example:
        >>> import torch
        >>> spec = TensorSpec("x", ("batch", 3, "height", "width"))
        >>> trial_sizes([spec], [torch.zeros(1, 3, 32, 24)])
        ({'batch': 1, 'height': 32, 'width': 24}, {'batch': 2, 'height': 32, 'width': 24}, {'batch': 1, 'height': 64, 'width': 40})
    """
    base: dict[str, int] = {}
    for spec, example in zip(inputs, example_inputs):
        for axis, name in spec.dynamic_axes.items():
            base.setdefault(name, int(example.shape[axis]))
    trials = []
    if "batch" in base:
        base["batch"] = 1
        trials.append({**base, "batch": 2})
    others = {name: _other_size(base[name], k) for k, name in enumerate(n for n in base if n != "batch")}
    if others:
        trials.append({**base, **others})
    return (base, *(trials or [base]))


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
            flat = _flat_items(run_example(model, [s.name for s in inputs], feeds))
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
    torch = require("torch", "export")
    from edgekit.runtimes.ort import OrtSession

    onnx_path = Path(onnx_path)
    session = session_factory(onnx_path) if session_factory else OrtSession(onnx_path, inputs=inputs)
    rng = np.random.default_rng(seed)
    trials = list(feeds) if feeds is not None else [random_inputs(inputs, s, rng=rng, int_high=100) for s in sizes]
    max_abs: dict[str, float] = {}
    max_rel: dict[str, float] = {}
    passed = True
    model.eval()
    for trial in trials:
        got = session.run(dict(trial))
        with torch.no_grad():
            expected = [v for _, v in _flat_items(model(*[torch.from_numpy(np.asarray(trial[s.name])) for s in inputs]))]
        assert len(expected) == len(got), f"torch gave {len(expected)} outputs, ONNX {len(got)}"
        for (name, value), ref in zip(got.items(), expected):
            ref = ref.detach().float().numpy() if hasattr(ref, "detach") else np.asarray(ref, np.float32)
            value = np.asarray(value, np.float32)
            if value.shape != ref.shape:
                raise ValidationError(
                    f"{onnx_path}: output {name!r} has shape {value.shape} in ONNX but {ref.shape} in torch"
                )
            diff = np.abs(value - ref)
            max_abs[name] = max(max_abs.get(name, 0.0), float(diff.max(initial=0.0)))
            rel = diff / np.maximum(np.abs(ref), 1e-12)
            max_rel[name] = max(max_rel.get(name, 0.0), float(rel.max(initial=0.0)))
            passed &= bool(np.all(diff <= atol + rtol * np.abs(ref)))
    report = ValidationReport(atol, rtol, len(trials), max_abs, max_rel, passed)
    if not passed:
        worst = max(max_abs, key=max_abs.get)
        raise ValidationError(
            f"{onnx_path}: output {worst!r} differs from torch by up to {max_abs[worst]:.3g} "
            f"(tolerance atol {atol:g} + rtol {rtol:g}); the export is wrong and was not saved",
            report,
        )
    return report
