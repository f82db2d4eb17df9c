"""Block lookup tables: latency of every distinct block of a search space, measured once per target.

A subnet is predicted as ``scale x sum(block latencies) + intercept``, the two constants fitted to a
few whole-subnet measurements (blocks timed alone miss fusion across block boundaries and per-run
fixed costs). Keys follow once-for-all's published tables, so those import directly::

    expanded_conv-input:112x112x16-output:56x56x24-expand:48-kernel:3-stride:2-idskip:0-se:0-hs:0

Example:
    >>> table = BlockTable("host", "onnxruntime", "fp32", 1, {"Conv-input:8x8x3-output:4x4x16": 0.2})
    >>> table.predict(["Conv-input:8x8x3-output:4x4x16"]).ms
    0.2
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from edgekit.runtimes.files import atomic_write_text
from edgekit.runtimes.errors import TargetError, require

from .latency import Prediction

__all__ = ["BlockTable", "KEY_PATTERN", "check_key", "load_ofa_yaml"]

_SHAPE = r"\d+(?:x\d+)*"
KEY_PATTERN = re.compile(
    rf"^(?:(?:Conv|Conv_1|Conv_2|AvgPool2D|Logits)-input:{_SHAPE}-output:{_SHAPE}"
    rf"|expanded_conv-input:{_SHAPE}-output:{_SHAPE}-expand:\d+-kernel:\d+-stride:\d+-idskip:[01]-se:[01]-hs:[01])$"
)


def check_key(key: str, where: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise TargetError(f"{where}: unknown block key {key!r} (expected once-for-all's MobileNetV3 table format)")
    return key


@dataclass(frozen=True)
class BlockTable:
    """Measured (or imported) block latencies in ms for one target, runtime, precision and thread count."""

    target: str
    runtime: str
    precision: str
    threads: int | None
    entries: Mapping[str, float]
    scale: float = 1.0
    intercept_ms: float = 0.0
    source: str = "measured"  # or "ofa-yaml:<file>"
    fitted_on: int = 0
    meta: Mapping[str, object] = field(default_factory=dict)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if k not in self.entries})

    def block_sum_ms(self, keys: Sequence[str]) -> float:
        absent = self.missing(keys)
        if absent:
            raise TargetError(f"block table for {self.target} lacks {len(absent)} block(s), e.g. {absent[0]!r}")
        return float(sum(self.entries[k] for k in keys))

    def predict(self, keys: Sequence[str]) -> Prediction:
        """``scale x sum + intercept`` over a subnet's block keys; raises if a block was never measured."""
        ms = self.scale * self.block_sum_ms(keys) + self.intercept_ms
        note = f"block table ({len(self.entries)} blocks, {self.source}; fit on {self.fitted_on} subnets)"
        return Prediction(ms, "calibrated", self.target, "table", self.precision, notes=(note,))

    def fit(self, subnets: Sequence[Sequence[str]], measured_ms: Sequence[float]) -> "BlockTable":
        """Fit ``scale`` and ``intercept`` to whole-subnet medians (least squares on relative error)."""
        if len(subnets) < 2:
            raise TargetError("fitting a block table needs at least 2 measured subnets")
        sums = np.array([self.block_sum_ms(keys) for keys in subnets])
        y = np.asarray(measured_ms, dtype=np.float64)
        weights = 1.0 / y
        design = np.stack([sums, np.ones_like(sums)], axis=1) * weights[:, None]
        scale, intercept = np.linalg.lstsq(design, y * weights, rcond=None)[0]
        return replace(self, scale=float(scale), intercept_ms=float(intercept), fitted_on=len(y))

    def to_json(self) -> dict:
        return {"target": self.target, "runtime": self.runtime, "precision": self.precision, "threads": self.threads,
                "scale": self.scale, "intercept_ms": self.intercept_ms, "source": self.source,
                "fitted_on": self.fitted_on, "meta": dict(self.meta), "entries": dict(sorted(self.entries.items()))}

    @classmethod
    def from_json(cls, data: Mapping, where: str) -> "BlockTable":
        try:
            entries = {check_key(k, where): float(v) for k, v in data["entries"].items()}
            return cls(str(data["target"]), str(data["runtime"]), str(data["precision"]),
                       None if data.get("threads") is None else int(data["threads"]), entries,
                       float(data.get("scale", 1.0)), float(data.get("intercept_ms", 0.0)),
                       str(data.get("source", "measured")), int(data.get("fitted_on", 0)), dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TargetError(f"{where}: not an edgekit block table ({type(exc).__name__}: {exc})") from exc

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "BlockTable":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TargetError(f"{path}: cannot read the block table ({exc})") from exc
        return cls.from_json(data, str(path))


def load_ofa_yaml(path: str | Path, target: str, precision: str = "fp32") -> BlockTable:
    """Import a once-for-all latency table (``{key: {mean: ms, ...}}``), read with ``yaml.safe_load``.

    Every key must be in once-for-all's MobileNetV3 format and every entry needs a numeric ``mean``;
    anything else is an error naming the key.
    """
    yaml = require("yaml", "export")
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TargetError(f"{path}: not a readable YAML latency table ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise TargetError(f"{path}: expected a mapping of block keys to {{mean: ms}}")
    entries = {}
    for key, value in data.items():
        check_key(key, str(path))
        if not isinstance(value, dict) or not isinstance(value.get("mean"), (int, float)):
            raise TargetError(f"{path}: entry {key!r} has no numeric 'mean'")
        if isinstance(value["mean"], bool) or not math.isfinite(value["mean"]) or value["mean"] < 0:
            raise TargetError(f"{path}: entry {key!r}: 'mean' must be a finite number of ms >= 0, got {value['mean']!r}")
        entries[key] = float(value["mean"])
    return BlockTable(target, "unknown", precision, None, entries, source=f"ofa-yaml:{path.name}")
