"""edgekit.runtimes: load an exported bundle (or a bare model file) and run it with numpy.

This is the part a device app embeds. It imports numpy and the backend it runs, nothing else: no
torch, no onnx, no typer (tests/test_runtime.py checks this in a fresh interpreter).

Example:
    >>> import edgekit.runtimes as rt                           # doctest: +SKIP
    >>> session = rt.load("out/", threads=1)                   # doctest: +SKIP
    >>> outputs = session.run({"input": image})                # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import Bundle, Graph, Manifest, read_bundle
from .errors import (
    BundleError,
    EdgekitError,
    InputMismatchError,
    ModelLoadError,
    UsageError,
)
from .formats import Format, get_format, register_format, unregister_format
from .loading import backend_class, format_for_file, load_graph, select_format
from .session import Session
from .spec import TensorSpec

__all__ = [
    "load",
    "load_graph",
    "load_file",
    "Format",
    "get_format",
    "register_format",
    "unregister_format",
    "Session",
    "TensorSpec",
    "Bundle",
    "BundleWriter",
    "Graph",
    "Manifest",
    "read_bundle",
    "EdgekitError",
    "BundleError",
    "InputMismatchError",
    "ModelLoadError",
]

# Bundle task -> module and function ``open_bundle(bundle, **options) -> Session`` for bundles of several
# graphs (an encoder-decoder LM runs its graphs from a generation loop).
_TASK_LOADERS: dict[str, tuple[str, str]] = {
    "seq2seq": ("edgekit.runtimes.seq2seq", "open_bundle"),
    "causal-lm": ("edgekit.runtimes.causal_lm", "open_bundle"),
}


def load(path: str | Path, *, verify: bool = True, format: str | None = None, **options: Any) -> Session:
    """Load a bundle directory or a bare model file (``.onnx``, or another registered format's suffix)
    and return a ready Session.

    ``options`` go to the backend (for onnxruntime: ``threads``, ``optimization``, ``providers``; for LiteRT:
    ``threads``, ``xnnpack``). A bundle of several formats (``--format all``) opens ``format``, else the first
    of its formats whose runtime is installed here.
    A bundle's files are checked against their sha256, and a file it does not list is refused, unless
    ``verify=False``; paths that leave the bundle (absolute, ``..``, symbolic links) are always refused.

    Example:
        >>> load("does-not-exist.onnx")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: does-not-exist.onnx: no such file or bundle directory
    """
    path = Path(path)
    if path.is_dir():
        bundle = select_format(read_bundle(path, verify=verify), format)
        if bundle.manifest.task in _TASK_LOADERS:
            import importlib

            module_name, function_name = _TASK_LOADERS[bundle.manifest.task]
            return getattr(importlib.import_module(module_name), function_name)(bundle, **options)
        return load_graph(bundle, **options)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or bundle directory")
    return load_file(path, format, **options)


def load_file(path: str | Path, fmt: str | None = None, **options: Any) -> Session:
    """Open one model file with the backend of format ``fmt`` (default: the format its suffix names);
    ``options`` go to the backend (``threads``, ``inputs`` / ``outputs`` specs, ...).

    Example:
        >>> load_file("model.bin")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.ModelLoadError: model.bin: unknown model file type '.bin' (expected a bundle directory or one of ['.engine', '.onnx', '.tflite'])
    """
    path = Path(path)
    return backend_class(fmt or format_for_file(path), str(path))(path, **options)


def __getattr__(name: str):
    """``edgekit.runtimes.BundleWriter`` on first use: a device app that only reads bundles never imports
    the write side."""
    if name == "BundleWriter":
        from .bundle_writer import BundleWriter

        return BundleWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
