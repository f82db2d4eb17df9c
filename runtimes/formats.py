"""The one table of model file formats: what each is, who runs it, who writes it, and whether it can be
written today. exporters/, targets/, the runtime loader and the CLI all read it; a new format is one
:func:`register_format` call (plus its exporter and backend classes), nothing else.

A record names its backend (``"module:Class"``, a :class:`~edgekit.runtimes.session.Session` subclass
that :func:`edgekit.runtimes.load` opens files with) and its exporter (``"module:Class"``, an
``edgekit.exporters.base.Exporter``; None while the format is planned). Both are imported only when
used, so this module stays numpy-only, as the device part must.

Example:
    >>> get_format("onnx").suffix, get_format("onnx").runtime, get_format("onnx").available
    ('.onnx', 'onnxruntime', True)
    >>> format_for_suffix(".ONNX").name
    'onnx'
    >>> get_format("tensorrt").status
    "planned: engine built on the device from the bundle's ONNX by its build kit; TensorRT cannot be installed here"
    >>> RUNTIME_FORMATS["qnn"]
    ('onnx', 'tflite')
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from .errors import UsageError
from .precision import PRECISIONS

__all__ = [
    "Format",
    "register_format",
    "unregister_format",
    "get_format",
    "find_format",
    "formats",
    "format_for_suffix",
    "import_ref",
    "missing_modules",
    "FORMAT_NAMES",
    "RUNTIME_FORMATS",
    "RUNTIME_NAMES",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Format:
    """One model file format.

    ``runtime`` is the runtime edgekit runs the file with (the manifest's latency entries name it);
    ``other_runtimes`` also load it on devices (a target profile's unit may name them). ``precisions``
    are those edgekit can write. ``reason`` says why a planned format cannot be written yet, or how an
    available one is written. ``runtime_modules`` / ``exporter_modules`` are the Python modules the
    backend / exporter need (``edgekit formats`` reports whether they are installed here).
    ``static_shapes``: its files fix every axis but the batch at export (a family that has a static-shape form
    of its graphs, such as the SLMs' fixed-size KV cache, gives that form for it).
    """

    name: str
    suffix: str
    runtime: str
    backend: str | None = None
    exporter: str | None = None
    precisions: tuple[str, ...] = ()
    reason: str = ""
    other_runtimes: tuple[str, ...] = ()
    runtime_modules: tuple[str, ...] = ()
    exporter_modules: tuple[str, ...] = ()
    extra: str = "export"  # the pip extra that installs exporter_modules: pip install 'edgekit[EXTRA]'
    static_shapes: bool = False

    def __post_init__(self) -> None:
        for field_name in ("precisions", "other_runtimes", "runtime_modules", "exporter_modules"):
            object.__setattr__(self, field_name, tuple(getattr(self, field_name)))
        if not _NAME.match(self.name):
            raise UsageError(f"format name {self.name!r}: expected a lowercase name such as onnx")
        if not _SUFFIX.match(self.suffix):
            raise UsageError(f"format {self.name}: suffix {self.suffix!r} must start with a dot, such as .onnx")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise UsageError(f"format {self.name}: precision {bad[0]!r} is not one of {', '.join(PRECISIONS)}")
        for what, ref in (("backend", self.backend), ("exporter", self.exporter)):
            if ref is not None and not (ref.partition(":")[0] and ref.partition(":")[2]):
                raise UsageError(f"format {self.name}: {what} {ref!r} must be 'module:Class'")
        if self.exporter is not None and not self.precisions:
            raise UsageError(f"format {self.name}: an exporter is given but no precision it writes")

    @property
    def available(self) -> bool:
        """Whether edgekit can write this format (it has an exporter); see :attr:`status` for why not."""
        return self.exporter is not None

    @property
    def runtimes(self) -> tuple[str, ...]:
        """Every runtime that loads this format, edgekit's own first."""
        return (self.runtime, *self.other_runtimes)

    @property
    def status(self) -> str:
        """``available`` or ``planned: <reason>``."""
        return "available" if self.available else f"planned: {self.reason}" if self.reason else "planned"


_ONNX_NOTE = "TorchScript exporter (opset 17) or torch.export (--dynamo); int8 static QDQ and fp16 via onnxruntime"
_TFLITE_NOTE = ("litert-torch (torch.export, no TensorFlow), the model's layout or --layout nhwc, static shapes; fp16 weights and full int8 "
                "via ai-edge-quantizer; runs in ai-edge-litert")

_FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", ".onnx", "onnxruntime", backend="edgekit.runtimes.ort:OrtSession",
               exporter="edgekit.exporters.onnx:OnnxExporter", precisions=("fp32", "fp16", "int8"),
               reason=_ONNX_NOTE, other_runtimes=("qnn",), runtime_modules=("onnxruntime",),
               exporter_modules=("torch", "onnx", "onnxruntime")),
        Format("tflite", ".tflite", "litert", backend="edgekit.runtimes.litert:LiteRtSession",
               exporter="edgekit.exporters.tflite:TfliteExporter", precisions=("fp32", "fp16", "int8"),
               reason=_TFLITE_NOTE, other_runtimes=("qnn", "edgetpu"), runtime_modules=("ai_edge_litert",),
               exporter_modules=("torch", "litert_torch", "ai_edge_quantizer", "ai_edge_litert"), extra="tflite",
               static_shapes=True),
        Format("tensorrt", ".engine", "tensorrt", backend="edgekit.runtimes.tensorrt:TensorRTSession",
               reason="engine built on the device from the bundle's ONNX by its build kit; TensorRT cannot be installed here",
               runtime_modules=("tensorrt",)),
    )
}


def register_format(fmt: Format, *, replace: bool = False) -> Format:
    """Add ``fmt`` to the table (``replace=True`` to redefine a name); returns it.

    Example:
        >>> demo = register_format(Format("demo", ".demo", "onnxruntime", backend="edgekit.runtimes.ort:OrtSession"))
        >>> format_for_suffix(".demo").name, "demo" in FORMAT_NAMES, RUNTIME_FORMATS["onnxruntime"]
        ('demo', True, ('onnx', 'demo'))
        >>> unregister_format("demo")
    """
    if not isinstance(fmt, Format):
        raise UsageError(f"register_format: expected a Format, got {type(fmt).__name__}")
    if fmt.name in _FORMATS and not replace:
        raise UsageError(f"format {fmt.name!r} is registered already (pass replace=True to redefine it)")
    clash = next((f for f in _FORMATS.values() if f.suffix.lower() == fmt.suffix.lower() and f.name != fmt.name), None)
    if clash is not None:
        raise UsageError(f"format {fmt.name}: suffix {fmt.suffix} is format {clash.name}'s already")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove the format called ``name`` (a plug-in's, or a test's)."""
    get_format(name)
    del _FORMATS[name]


def find_format(name: str) -> Format | None:
    """The format called ``name``, or None."""
    return _FORMATS.get(name)


def get_format(name: str) -> Format:
    """The format called ``name``; UsageError naming the known ones otherwise.

    Example:
        >>> get_format("pt")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --format 'pt' is not one of ['onnx', 'tensorrt', 'tflite']
    """
    if name not in _FORMATS:
        raise UsageError(f"--format {name!r} is not one of {sorted(_FORMATS)}")
    return _FORMATS[name]


def formats() -> tuple[Format, ...]:
    """Every registered format, in registration order (onnx, tflite, tensorrt, then plug-ins)."""
    return tuple(_FORMATS.values())


def format_for_suffix(suffix: str) -> Format | None:
    """The format whose files end in ``suffix`` (case-insensitive), or None."""
    return next((f for f in _FORMATS.values() if f.suffix.lower() == suffix.lower()), None)


def import_ref(ref: str, where: str) -> Any:
    """Import ``"module:attribute"``; ``where`` names the record that holds it in the error.

    Example:
        >>> import_ref("edgekit.runtimes.ort:OrtSession", "format onnx").backend
        'onnxruntime'
    """
    module_name, _, attribute = ref.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{where}: cannot import {ref} ({type(exc).__name__}: {exc})") from exc


def missing_modules(modules: Sequence[str]) -> tuple[str, ...]:
    """Those of ``modules`` that are not installed here (found without importing them).

    Example:
        >>> missing_modules(["numpy", "no_such_module_here"])
        ('no_such_module_here',)
    """
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return tuple(missing)


class _Names(Sequence[str]):
    """The registered format names, read at each use (so plug-in formats count in target profiles)."""

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(_FORMATS)[index]

    def __len__(self) -> int:
        return len(_FORMATS)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_FORMATS))

    def __contains__(self, name: object) -> bool:
        return name in _FORMATS

    def __repr__(self) -> str:
        return repr(tuple(_FORMATS))


class _RuntimeFormats(Mapping[str, tuple[str, ...]]):
    """Runtime -> the formats it loads, derived from the records at each use."""

    def _table(self) -> dict[str, tuple[str, ...]]:
        table: dict[str, list[str]] = {fmt.runtime: [] for fmt in _FORMATS.values()}  # main runtimes first
        for fmt in _FORMATS.values():
            for runtime in fmt.runtimes:
                table.setdefault(runtime, []).append(fmt.name)
        return {runtime: tuple(names) for runtime, names in table.items()}

    def __getitem__(self, runtime: str) -> tuple[str, ...]:
        return self._table()[runtime]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return repr(self._table())


FORMAT_NAMES: Sequence[str] = _Names()
RUNTIME_FORMATS: Mapping[str, tuple[str, ...]] = _RuntimeFormats()


class _RuntimeNames(Sequence[str]):
    """The runtimes some registered format names, read at each use (target profiles' ``runtime`` values)."""

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(RUNTIME_FORMATS)[index]

    def __len__(self) -> int:
        return len(RUNTIME_FORMATS)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(RUNTIME_FORMATS))

    def __contains__(self, name: object) -> bool:
        return name in tuple(RUNTIME_FORMATS)

    def __repr__(self) -> str:
        return repr(tuple(RUNTIME_FORMATS))


RUNTIME_NAMES = _RuntimeNames()
