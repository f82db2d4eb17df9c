"""Per-block values of a subnet, computed once per (resolution, block, kernel, expand ratio).

In these MobileNetV3 spaces block ``b``'s shapes depend only on the input resolution, its kernel and
its expand ratio (dropping blocks at a stage's end changes no later shape), and the stem and head
depend only on the resolution. So any per-block quantity (latency, features, weights, activations)
is computed once per distinct block and a subnet is ~20 dict lookups.

Example:
    >>> import random
    >>> from edgekit.models.ofa import get_space, sample
    >>> space = get_space("ofa-mbv3-tiny")
    >>> table = BlockwiseTable(space, lambda spec: spec.out_ch)
    >>> fixed, blocks = table.values(sample(space, random.Random(0)))
    >>> len(fixed), len(blocks) > 0
    (6, True)
"""

from __future__ import annotations

from typing import Any, Callable

from edgekit.models.ofa.blocks import BlockSpec, subnet_blocks

__all__ = ["BlockwiseTable"]


class BlockwiseTable:
    def __init__(self, space, fn: Callable[[BlockSpec], Any]) -> None:
        self.space, self.fn = space, fn
        self._per_resolution: dict[int, tuple[list, dict[tuple[int, int, int], Any]]] = {}
        self._max_depth = space.max_depth

    def _resolution(self, r: int):
        found = self._per_resolution.get(r)
        if found is None:
            from edgekit.models.ofa import largest

            base = largest(self.space, r)
            n = self.space.num_blocks
            per_block: dict[tuple[int, int, int], Any] = {}
            fixed: list = []
            for k in self.space.ks_choices:
                for e in self.space.e_choices:
                    specs = subnet_blocks(base.replace(ks=(k,) * n, e=(e,) * n), self.space)
                    per_block.update({(b, k, e): self.fn(spec) for b, spec in enumerate(specs[2:-4])})
                    if not fixed:
                        fixed = [self.fn(spec) for spec in specs[:2] + specs[-4:]]
            found = (fixed, per_block)
            self._per_resolution[r] = found
        return found

    def values(self, config) -> tuple[list, list]:
        """(stem and head values, values of the blocks the config runs, in order)."""
        fixed, per_block = self._resolution(config.r)
        depth, ks, e = self._max_depth, config.ks, config.e
        return fixed, [per_block[(b, ks[b], e[b])] for s, d in enumerate(config.d) for b in range(s * depth, s * depth + d)]
