"""Fast subnet latency for search: per-block predictions cached by block key, summed per subnet.

The best source available for (target, unit, precision, threads) is used, as everywhere in edgekit:
a measured block table (fitted to whole subnets) > the target's calibrated per-op model > the
roofline over published numbers. Every distinct block is predicted once (:class:`BlockwiseTable`),
so a subnet costs ~20 dict lookups.

Example:
    >>> import random
    >>> from edgekit.models.ofa import get_space, sample
    >>> from edgekit.targets import load_target
    >>> space = get_space("ofa-mbv3-shapes")
    >>> model = SubnetLatency(space, load_target("jetson"), "gpu", "fp16")
    >>> ms = model.predict(sample(space, random.Random(0)))
    >>> ms > 0, model.source
    (True, 'modeled')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.models.ofa.blocks import block_ops
from edgekit.runtimes.errors import TargetError
from edgekit.targets.calibrated import FEATURES, Calibration, features
from edgekit.targets.latency import predict_ms
from edgekit.targets.lut import BlockTable
from edgekit.targets.predictor import load_calibration

from .blockwise import BlockwiseTable

__all__ = ["SubnetLatency"]


class SubnetLatency:
    """Predict subnet latency on one unit of a target at one precision, with a per-block cache."""

    def __init__(self, space, target, unit: str | None = None, precision: str = "fp32", threads: int | None = None,
                 *, table: BlockTable | None = None, calibration: Calibration | None = None,
                 directory: Path | None = None) -> None:
        self.space, self.target = space, target
        self.unit = target.unit(unit or target.default_unit).name
        self.precision, self.threads = precision, threads
        if precision not in target.unit(self.unit).precisions:
            raise TargetError(f"unit {self.unit!r} of {target.name} does not run {precision}; it runs "
                              f"{', '.join(target.unit(self.unit).precisions)}")
        if calibration is None and table is None:
            calibration = load_calibration(target, self.unit, precision, threads, directory)
        self.table, self.calibration = table, calibration
        self.source = "calibrated" if (table or calibration) else "modeled"
        self._cache: dict[str, object] = {}
        self._coefficients = np.array([calibration.coefficients[f] for f in FEATURES]) if calibration else None
        self._blocks = BlockwiseTable(space, self._block_value)

    def _block_value(self, spec):
        value = self._cache.get(spec.key)
        if value is None:
            if self.table is not None:
                value = self.table.entries.get(spec.key)
                if value is None:
                    raise TargetError(f"block table for {self.target.name} lacks block {spec.key!r}")
            elif self.calibration is not None:
                value = features(block_ops(spec), self.calibration.peak_tops, self.precision)
                value[-1] = 0.0  # the constant is added once per subnet, not per block
            else:
                value = predict_ms(block_ops(spec), self.target, self.unit, self.precision, self.threads).ms
                if value is None:
                    raise TargetError(f"no latency model for unit {self.unit} of {self.target.name} at "
                                      f"{self.precision}: its peak is not published")
            self._cache[spec.key] = value
        return value

    def predict(self, config) -> float:
        """Latency of one subnet in ms (source: :attr:`source`); ``config`` must fit the space."""
        fixed, blocks = self._blocks.values(config)
        values = fixed + blocks
        if self.table is not None:
            return self.table.scale * float(sum(values)) + self.table.intercept_ms
        if self._coefficients is not None:
            total = np.sum(values, axis=0)
            total[-1] = 1.0
            return float(total @ self._coefficients)
        return float(sum(values))
