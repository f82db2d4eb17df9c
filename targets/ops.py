"""Which graph ops a compute unit runs: a unit's ``[units.NAME.ops]`` table in a target profile.

The lists name ONNX operator types (the graph edgekit exports first), copied from each vendor's
published support list and cited in the TOML; ``edgekit.exporters.coverage`` checks an exported graph
against them. A unit without the table runs every op (onnxruntime's CPU provider, for example).

``fallback`` names the unit that runs what this one cannot (absent: the build fails); ``split`` says how
the graph is cut: ``"each"`` (only the unsupported nodes move, TensorRT DLA with GPU fallback) or
``"once"`` (the first unsupported node and everything after it move, the Edge TPU compiler).
``max_innermost_dims``: at most this many innermost tensor dimensions may be larger than 1.

Example:
    >>> ops = OpSupport(supported=frozenset({"Conv", "Relu"}), fallback="cpu", split="once", source="V")
    >>> ops.runs("Conv"), ops.runs("Softmax")
    (True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OpSupport", "SPLITS", "read_ops"]

SPLITS = ("each", "once")


@dataclass(frozen=True)
class OpSupport:
    """A unit's supported ONNX op types and the constraints the coverage check applies."""

    supported: frozenset[str]
    source: str
    fallback: str | None = None
    split: str = "each"
    max_innermost_dims: int | None = None
    notes: str = ""

    def runs(self, op_type: str) -> bool:
        """Whether the unit runs nodes of ``op_type`` (an ONNX operator type)."""
        return op_type in self.supported

    def to_json(self) -> dict[str, Any]:
        return {"supported": sorted(self.supported), "source": self.source, "fallback": self.fallback,
                "split": self.split, "max_innermost_dims": self.max_innermost_dims, "notes": self.notes}


def read_ops(table: Any) -> OpSupport:
    """An :class:`OpSupport` from a unit's ``ops`` table (``table`` is target.py's checked view of it)."""
    table.check_keys(("supported", "source"), ("fallback", "split", "max_innermost_dims", "notes"))
    supported = table.get("supported", "a non-empty list of ONNX op types",
                          lambda v: isinstance(v, list) and v and all(isinstance(x, str) and x for x in v))
    split = table.get("split", f"one of {', '.join(SPLITS)}", lambda v: v in SPLITS, "each")
    return OpSupport(
        supported=frozenset(supported),
        source=table.string("source"),
        fallback=table.name("fallback", None),
        split=split,
        max_innermost_dims=table.count("max_innermost_dims", None),
        notes=table.string("notes", ""),
    )
