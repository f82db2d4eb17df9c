"""Open a model file with the runtime backend of its format: the part of loading that task sessions share.

``edgekit.runtimes.load`` (the package) dispatches a bundle to its task's session; the sessions of
several graphs (seq2seq, causal-lm) open each graph through :func:`load_graph` here, so they import
this module, never the package that imports them.

Example:
    >>> format_for_file(Path("model.onnx"))
    'onnx'
    >>> backend_class("onnx", "model.onnx").__name__
    'OrtSession'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .bundle import Bundle
from .errors import ModelLoadError
from .formats import find_format, format_for_suffix, formats, import_ref, missing_modules
from .session import Session
from .spec import TensorSpec

__all__ = ["backend_class", "cross_check", "format_for_file", "load_graph", "select_format"]


def backend_class(fmt: str, where: str) -> type[Session]:
    """The Session class that runs files of format ``fmt`` (its record's backend in
    :mod:`edgekit.runtimes.formats`, imported on first use); ``where`` names the file in the error."""
    record = find_format(fmt)
    if record is None or record.backend is None:
        runnable = sorted(f.name for f in formats() if f.backend is not None)
        raise ModelLoadError(f"{where}: no runtime backend for format {fmt!r} (available: {runnable})")
    return import_ref(record.backend, f"format {fmt}")


def format_for_file(path: Path) -> str:
    """The format of a bare model file, from its suffix.

    Example:
        >>> format_for_file(Path("model.bin"))
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: model.bin: unknown model file type '.bin' (expected a bundle directory or one of ['.engine', '.onnx', '.tflite'])
    """
    record = format_for_suffix(path.suffix)
    if record is None:
        raise ModelLoadError(
            f"{path}: unknown model file type {path.suffix!r} (expected a bundle directory or one of "
            f"{sorted(f.suffix for f in formats())})"
        )
    return record.name


def select_format(bundle: Bundle, fmt: str | None = None) -> Bundle:
    """The bundle as seen by one of its formats: ``fmt``, else the first (main first) whose runtime backend
    is installed here (else the main one, whose backend then names what to install)."""
    names = bundle.manifest.format_names
    if fmt is None:
        installed = [name for name in names
                     if (record := find_format(name)) is not None and not missing_modules(record.runtime_modules)]
        fmt = installed[0] if installed else names[0]
    if fmt not in names:
        raise ModelLoadError(f"{bundle.path}: the bundle holds no {fmt!r} model (it has {list(names)})")
    return bundle if fmt == bundle.manifest.format else Bundle(bundle.path, bundle.manifest.for_format(fmt))


def load_graph(bundle: Bundle, graph: str = "model", **options: Any) -> Session:
    """Open one graph of an already-read bundle with the backend for the bundle's format."""
    entry = bundle.manifest.graph(graph)
    backend = backend_class(bundle.manifest.format, str(bundle.path))
    path = bundle.file(graph)
    session = backend(path, inputs=entry.inputs, outputs=entry.outputs, **options)
    for kind, declared, actual in (("input", entry.inputs, getattr(session, "file_inputs", None)),
                                   ("output", entry.outputs, getattr(session, "file_outputs", None))):
        if actual is not None:
            cross_check(declared, actual, kind, str(path))
    return session


def cross_check(declared: Sequence[TensorSpec], actual: Sequence[TensorSpec], kind: str, where: str) -> None:
    """The manifest's specs name the model file's own tensors with the same ranks (else ModelLoadError).

    Example:
        >>> cross_check([TensorSpec("image", (1, 3))], [TensorSpec("x", (1, 3))], "input", "m.onnx")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: m.onnx: manifest input 'image' is not an input of the model file (it has ['x'])
    """
    by_name = {spec.name: spec for spec in actual}
    for spec in declared:
        if spec.name not in by_name:
            raise ModelLoadError(f"{where}: manifest {kind} {spec.name!r} is not an {kind} of the model file (it has {sorted(by_name)})")
        if len(spec.shape) != len(by_name[spec.name].shape):
            raise ModelLoadError(f"{where}: {kind} {spec.name!r} has rank {len(spec.shape)} in the manifest but "
                                 f"{len(by_name[spec.name].shape)} in the model file")
    missing = sorted(set(by_name) - {spec.name for spec in declared})
    if kind == "input" and missing:
        raise ModelLoadError(f"{where}: model file input(s) {missing} are not in the manifest")
