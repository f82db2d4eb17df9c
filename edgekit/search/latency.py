"""Fast subnet latency for search: per-block predictions cached by block key, summed per subnet.

The source is edgekit's one chooser's (:func:`edgekit.targets.estimate.choose_basis`): a measured
block table (fitted to whole subnets) > the target's calibrated per-op model > the fit to published
device measurements shipped in the target TOML (``calibrated (published)``) > the roofline over
published numbers. Every distinct block of the search space (``space.blocks(config)``) is predicted
once, so a subnet costs ~20 dict lookups.

Example:
    >>> import random
    >>> from edgekit.models.ofa import get_space, sample
    >>> from edgekit.targets import load_target
    >>> space = get_space("ofa-mbv3-shapes")
    >>> model = SubnetLatency(space, load_target("jetson"), "gpu", "fp16")
    >>> ms = model.predict(sample(space, random.Random(0)))
    >>> ms > 0, model.source
    (True, 'calibrated (published)')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes.errors import TargetError
from edgekit.targets.calibrated import FEATURES, Calibration, features
from edgekit.targets.estimate import choose_basis
from edgekit.targets.latency import predict_ms
from edgekit.targets.published_features import predict_published
from edgekit.targets.lut import BlockTable

__all__ = ["SubnetLatency"]


class SubnetLatency:
    """Predict subnet latency on one unit of a target at one precision, with a per-block cache."""

    def __init__(self, space, target, unit: str | None = None, precision: str = "fp32", threads: int | None = None,
                 *, table: BlockTable | None = None, calibration: Calibration | None = None,
                 directory: Path | None = None) -> None:
        self.space, self.target = space, target
        basis = choose_basis(target, unit, precision, threads, table=table, calibration=calibration, directory=directory)
        self.unit, self.precision, self.threads = basis.unit, precision, threads
        method = basis.method(blocks=True)  # a subnet is always known by its blocks
        self.table = basis.table if method == "table" else None
        self.calibration = basis.calibration if method == "calibration" else None
        self.published = basis.published if method == "published" else None  # fit to published points
        self.source = basis.source(blocks=True)
        self._cache: dict[str, object] = {}
        self._coefficients = np.array([self.calibration.coefficients[f] for f in FEATURES]) if self.calibration else None

    def _block_value(self, spec):
        value = self._cache.get(spec.key)
        if value is None:
            if self.table is not None:
                value = self.table.entries.get(spec.key)
                if value is None:
                    raise TargetError(f"block table for {self.target.name} lacks block {spec.key!r}")
            elif self.calibration is not None:
                value = features(spec.ops(), self.calibration.peak_tops, self.precision)
                value[-1] = 0.0  # the constant is added once per subnet, not per block
            elif self.published is not None:
                value = predict_published(self.published, spec.ops(), self.target, self.unit)
            else:
                value = predict_ms(spec.ops(), self.target, self.unit, self.precision, self.threads).ms
                if value is None:
                    raise TargetError(f"no latency model for unit {self.unit} of {self.target.name} at "
                                      f"{self.precision}: its peak is not published")
            self._cache[spec.key] = value
        return value

    def predict(self, config) -> float:
        """Latency of one subnet in ms (source: :attr:`source`); ``config`` must fit the space."""
        values = [self._block_value(block) for block in self.space.blocks(config)]
        if self.table is not None:
            return self.table.scale * float(sum(values)) + self.table.intercept_ms
        if self._coefficients is not None:
            total = np.sum(values, axis=0)
            total[-1] = 1.0
            return float(total @ self._coefficients)
        return float(sum(values))
