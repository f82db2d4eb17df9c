"""The format table, as exporters see it: the records live in :mod:`edgekit.runtimes.formats` (the one
table); this module only re-exports them with the exporter-side checks of :mod:`edgekit.exporters.base`.

Example:
    >>> check_format("onnx", "fp32").suffix
    '.onnx'
    >>> FORMATS["tflite"].available
    False
"""

from __future__ import annotations

from typing import Iterator, Mapping

from edgekit.runtimes.formats import Format, find_format, formats, get_format, register_format

from .base import check_format, writable

__all__ = ["Format", "FORMATS", "check_format", "writable", "formats", "get_format", "register_format"]


class _ByName(Mapping[str, Format]):
    """Format name -> record, read from the one table at each use."""

    def __getitem__(self, name: str) -> Format:
        record = find_format(name)
        if record is None:
            raise KeyError(name)
        return record

    def __iter__(self) -> Iterator[str]:
        return iter([f.name for f in formats()])

    def __len__(self) -> int:
        return len(formats())


FORMATS: Mapping[str, Format] = _ByName()
