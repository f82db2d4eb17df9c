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

from .bundle import Bundle, BundleWriter, Graph, Manifest, read_bundle
from .errors import (
    BundleError,
    EdgekitError,
    InputMismatchError,
    ModelLoadError,
    UsageError,
)
from .session import Session
from .spec import TensorSpec

__all__ = [
    "load",
    "load_graph",
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

# File format -> backend module and class, imported only when used.
_BACKENDS = {"onnx": ("edgekit.runtimes.ort", "OrtSession")}
_SUFFIX_FORMATS = {".onnx": "onnx"}
# Bundle task -> module and function ``open_bundle(bundle, **options) -> Session`` for bundles of several
# graphs (an encoder-decoder LM runs its graphs from a generation loop).
_TASK_LOADERS: dict[str, tuple[str, str]] = {
    "seq2seq": ("edgekit.runtimes.seq2seq", "open_bundle"),
    "causal-lm": ("edgekit.runtimes.causal_lm", "open_bundle"),
}


def _backend_class(fmt: str, where: str):
    if fmt not in _BACKENDS:
        raise ModelLoadError(f"{where}: no runtime backend for format {fmt!r} (available: {sorted(_BACKENDS)})")
    import importlib

    module_name, class_name = _BACKENDS[fmt]
    return getattr(importlib.import_module(module_name), class_name)


def load_graph(bundle: Bundle, graph: str = "model", **options: Any) -> Session:
    """Open one graph of an already-read bundle with the backend for the bundle's format."""
    entry = bundle.manifest.graph(graph)
    backend = _backend_class(bundle.manifest.format, str(bundle.path))
    return backend(bundle.file(graph), inputs=entry.inputs, outputs=entry.outputs, **options)


def load(path: str | Path, *, verify: bool = True, **options: Any) -> Session:
    """Load a bundle directory or a bare model file (``.onnx``) and return a ready Session.

    ``options`` go to the backend (for onnxruntime: ``threads``, ``optimization``, ``providers``).
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
        bundle = read_bundle(path, verify=verify)
        if bundle.manifest.task in _TASK_LOADERS:
            import importlib

            module_name, function_name = _TASK_LOADERS[bundle.manifest.task]
            return getattr(importlib.import_module(module_name), function_name)(bundle, **options)
        return load_graph(bundle, **options)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or bundle directory")
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ModelLoadError(
            f"{path}: unknown model file type {path.suffix!r} (expected a bundle directory or one of "
            f"{sorted(_SUFFIX_FORMATS)})"
        )
    return _backend_class(fmt, str(path))(path, **options)
