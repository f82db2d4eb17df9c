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
from typing import Any

from .bundle import Bundle
from .errors import ModelLoadError
from .formats import find_format, format_for_suffix, formats, import_ref
from .session import Session

__all__ = ["backend_class", "format_for_file", "load_graph"]


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


def load_graph(bundle: Bundle, graph: str = "model", **options: Any) -> Session:
    """Open one graph of an already-read bundle with the backend for the bundle's format."""
    entry = bundle.manifest.graph(graph)
    backend = backend_class(bundle.manifest.format, str(bundle.path))
    return backend(bundle.file(graph), inputs=entry.inputs, outputs=entry.outputs, **options)
