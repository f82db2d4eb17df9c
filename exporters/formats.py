"""The one table of output formats: it drives option checks, CLI choices and the README's table.

Example:
    >>> check_format("onnx", "fp32").suffix
    '.onnx'
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekit.runtimes.errors import UsageError

__all__ = ["FormatInfo", "FORMATS", "check_format"]


@dataclass(frozen=True)
class FormatInfo:
    name: str
    suffix: str
    precisions: tuple[str, ...]  # precisions edgekit can write in this format today
    runtime: str
    available: bool
    note: str = ""


FORMATS: dict[str, FormatInfo] = {
    "onnx": FormatInfo("onnx", ".onnx", ("fp32", "fp16", "int8"), "onnxruntime", True,
                       "TorchScript exporter, opset 17; int8 static QDQ and fp16 via onnxruntime"),
    "tflite": FormatInfo("tflite", ".tflite", (), "litert", False, "planned: litert-torch conversion"),
    "tensorrt": FormatInfo("tensorrt", ".engine", (), "tensorrt", False, "planned: engine or on-device build kit"),
}


def check_format(fmt: str, precision: str) -> FormatInfo:
    """Return the format's table row, or raise UsageError naming what edgekit can write."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {sorted(FORMATS)}")
    info = FORMATS[fmt]
    if not info.available:
        writable = [name for name, row in FORMATS.items() if row.available]
        raise UsageError(f"--format {fmt}: edgekit cannot write it yet ({info.note}); available: {writable}")
    if precision not in info.precisions:
        raise UsageError(f"--precision {precision}: format {fmt} supports {list(info.precisions)} so far")
    return info
