"""The Exporter protocol: what a format's exporter does, and how the pipeline finds it.

A format's record (:mod:`edgekit.runtimes.formats`) names its exporter class as ``"module:Class"``;
:func:`exporter_for` checks that edgekit can write the format at a precision and returns an instance.
An exporter turns one :class:`ExportGraph` (a torch module with its I/O description) into a file,
gives the session its parity check runs in (by default the format's runtime backend), and writes the
fp16 / int8 variant of an fp32 file. The pipeline never names a format's tools: it calls these.

Example:
    >>> exporter = exporter_for("onnx", "int8")
    >>> type(exporter).__name__, exporter.format, isinstance(exporter, Exporter)
    ('OnnxExporter', 'onnx', True)
    >>> check_format("tflite", "int8").suffix
    '.tflite'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from edgekit.runtimes import load_file
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.formats import Format, formats, get_format, import_ref
from edgekit.runtimes.session import Session
from edgekit.runtimes.spec import TensorSpec

from .parity import ValidationReport, check_parity, trial_sizes

__all__ = [
    "ExportGraph",
    "ExportOptions",
    "Artifact",
    "Exporter",
    "BaseExporter",
    "exporter_for",
    "parity_subject",
    "check_format",
    "writable",
]

Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ExportGraph:
    """One graph to export: an eval-mode torch module, its input specs (named dynamic axes) and example
    inputs, its output names (None: the model's own) and output axes (None: found by running it), and
    the feeds its parity check uses (None: random inputs at :func:`trial_sizes`). ``keep_inputs``: the
    file must keep every input, even one the graph does not use (a decoder's KV cache). ``axis_ranges``:
    (min, opt, max) of named dynamic axes for builders that fix shape ranges (TensorRT optimisation profiles);
    an axis without one gets 1 / the example size / 8x it."""

    name: str
    module: Any
    inputs: tuple[TensorSpec, ...]
    example_inputs: tuple[Any, ...]
    output_names: tuple[str, ...] | None = None
    output_axes: Mapping[str, Mapping[int, str]] | None = None
    validation_feeds: tuple[Feeds, ...] | None = None
    keep_inputs: bool = False
    axis_ranges: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def trials(self) -> tuple[dict[str, int], ...]:
        """Dynamic-axis sizes to try the file at (the first one is the example's, at batch 1)."""
        return trial_sizes(self.inputs, self.example_inputs)


@dataclass(frozen=True)
class ExportOptions:
    """Options every exporter receives; one that does not apply to a format is ignored by it
    (``opset`` by a non-ONNX exporter), one it cannot honour raises ExportError."""

    opset: int = 17
    dynamo: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Artifact:
    """A written file with the I/O specs it really has, and how it was made (``provenance``: the
    exporter's name and version facts such as the ONNX opset; recorded in the manifest)."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Exporter(Protocol):
    """What the pipeline needs from a format's exporter."""

    format: str  # the name of the format record it writes

    def export(self, graph: ExportGraph, path: Path, options: ExportOptions) -> Artifact:
        """Write ``graph`` to ``path`` (fp32); ExportError when the model cannot be exported."""

    def describe(self, options: ExportOptions) -> str:
        """A few words on how it exports with ``options`` (progress messages), e.g. ``opset 17``."""

    def validation_session(self, path: Path, inputs: Sequence[TensorSpec], **options: Any) -> Session:
        """A session over the written file, for parity and accuracy runs."""

    def validate(self, artifact: Artifact, graph: ExportGraph, *, atol: float, rtol: float) -> ValidationReport:
        """Compare the file with the torch module; ValidationError above tolerance."""

    def write_variant(self, fp32_path: Path, out_path: Path, precision: str, inputs: Sequence[TensorSpec],
                      int8_calibration: Sequence[Feeds] = ()) -> dict[str, Any]:
        """Write the ``precision`` variant of the fp32 file; returns what the manifest records about it."""


class BaseExporter(ABC):
    """Validation through the format's runtime backend; a format supplies ``export`` and ``write_variant``."""

    format: ClassVar[str]

    @property
    def record(self) -> Format:
        return get_format(self.format)

    @abstractmethod
    def export(self, graph: ExportGraph, path: Path, options: ExportOptions) -> Artifact: ...

    @abstractmethod
    def write_variant(self, fp32_path: Path, out_path: Path, precision: str, inputs: Sequence[TensorSpec],
                      int8_calibration: Sequence[Feeds] = ()) -> dict[str, Any]: ...

    def describe(self, options: ExportOptions) -> str:
        return ""

    def validation_session(self, path: Path, inputs: Sequence[TensorSpec], **options: Any) -> Session:
        return load_file(path, self.format, inputs=inputs, **options)

    def validate(self, artifact: Artifact, graph: ExportGraph, *, atol: float, rtol: float) -> ValidationReport:
        session = self.validation_session(artifact.path, artifact.inputs)
        return check_parity(session, graph.module, artifact.inputs, feeds=graph.validation_feeds, trials=graph.trials,
                            atol=atol, rtol=rtol, where=parity_subject(self.format, graph.name))


def parity_subject(fmt: str, graph: str) -> str:
    """How a parity failure names what failed: the graph and format, never the staging file (it is deleted
    with the failed export).

    Example:
        >>> parity_subject("onnx", "model")
        "the exported onnx file of graph 'model'"
    """
    return f"the exported {fmt} file of graph {graph!r}"


def writable(fmt: str) -> bool:
    """Whether edgekit can write format ``fmt`` today (its record names an exporter).

    Example:
        >>> writable("onnx"), writable("tensorrt"), writable("pt")
        (True, False, False)
    """
    return any(f.name == fmt and f.available for f in formats())


def check_format(fmt: str, precision: str) -> Format:
    """The format's record when edgekit can write it at ``precision``; UsageError naming what it can write.

    Example:
        >>> check_format("onnx", "int4")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --precision int4: format onnx supports ['fp32', 'fp16', 'int8'] so far
    """
    record = get_format(fmt)
    if not record.available:
        available = [f.name for f in formats() if f.available]
        raise UsageError(f"--format {fmt}: edgekit cannot write it yet ({record.status}); available: {available}")
    if precision not in record.precisions:
        raise UsageError(f"--precision {precision}: format {fmt} supports {list(record.precisions)} so far")
    return record


def exporter_for(fmt: str, precision: str = "fp32") -> Exporter:
    """An instance of the exporter of format ``fmt``, checked by :func:`check_format` first."""
    record = check_format(fmt, precision)
    assert record.exporter is not None  # check_format refuses formats without one
    exporter = import_ref(record.exporter, f"format {fmt}")()
    if exporter.format != fmt:
        raise UsageError(f"format {fmt}: its exporter {record.exporter} writes format {exporter.format!r}")
    return exporter
