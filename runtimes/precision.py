"""The numeric precisions edgekit knows, and how many bytes one element takes in each.

The one list: target profiles, the format table, memory estimates, latency models and the search
import it from here (the lowest layer that all of them may import).

Example:
    >>> PRECISIONS
    ('fp32', 'fp16', 'int8')
    >>> [bytes_per_element(p) for p in PRECISIONS]
    [4, 2, 1]
"""

from __future__ import annotations

from .errors import UsageError

__all__ = ["PRECISIONS", "bytes_per_element"]

PRECISIONS = ("fp32", "fp16", "int8")
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
assert tuple(_BYTES) == PRECISIONS


def bytes_per_element(precision: str) -> int:
    """Bytes one weight or activation element takes at ``precision``.

    Example:
        >>> bytes_per_element("fp16")
        2
        >>> bytes_per_element("bf16")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: precision 'bf16' is not one of fp32, fp16, int8
    """
    if precision not in _BYTES:
        raise UsageError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return _BYTES[precision]
