"""Shipped compression levels: pruned copies of a built-in segmenter, fine-tuned on a GPU by train_levels.py.

A level is the dense model pruned to remove a fraction of its MACs (``allocation`` rates, channel counts kept
at multiples of ``round_to``) and then fine-tuned with distillation from the dense model for as long as the
dense model was trained; the host's few hundred fine-tuning steps recover far less (seg-simple at 50% MACs:
43-50 mIoU after 300 host steps). ``edgekit compress`` and ``edgekit select`` start from a shipped level when
one matches the request (same built-in, ratio, allocation and rounding, pruned from the shipped dense
weights); the record beside each file says how it was made.

Files: ``<dense stem>_p<percent>.pt`` (torch-pruning's state, fp16, loaded with ``weights_only=True``) and a
``.json`` record beside it.

Example:
    >>> level_path("seg-simple", 0.5).name
    'seg_simple_p50.pt'
    >>> find_level("seg-simple", 0.123, "uniform", None) is None
    True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["level_path", "find_level", "shipped_level", "weights_sha256"]


def level_path(name: str, ratio: float) -> Path:
    """Where built-in ``name``'s level at ``ratio`` of the MACs removed is shipped."""
    from edgekit.models.seg.source import weights_path

    dense = weights_path(name)
    return dense.with_name(f"{dense.stem}_p{round(100 * ratio)}.pt")


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file (a level names the dense weights it was pruned from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def find_level(name: str | None, ratio: float, allocation: str, round_to: int | None) -> dict[str, Any] | None:
    """The record of the shipped level that matches, or None (not a built-in, no such file, other settings,
    or pruned from other dense weights)."""
    from edgekit.models.seg.source import BUILTINS, weights_path

    if name not in BUILTINS or abs(100 * ratio - round(100 * ratio)) > 1e-6:
        return None
    path = level_path(name, ratio)
    record_path = path.with_suffix(".json")
    if not (path.is_file() and record_path.is_file()):
        return None
    record = json.loads(record_path.read_text())
    if (record.get("allocation"), record.get("round_to")) != (allocation, round_to):
        return None
    if record.get("dense_sha256") != weights_sha256(weights_path(name)):
        return None
    return record


def shipped_level(name: str | None, ratio: float, allocation: str, round_to: int | None):
    """``(model, record)`` of the shipped level that matches (the model in fp32, eval mode), or None."""
    from edgekit.models.seg.source import load_builtin

    from .checkpoint import load_pruned

    record = find_level(name, ratio, allocation, round_to)
    if record is None:
        return None
    assert name is not None and record["file"] == level_path(name, ratio).name, record["file"]
    dense, _ = load_builtin(name)
    return load_pruned(dense, level_path(name, ratio)).float().eval(), record
