"""Zhu & Gupta's gradual pruning schedule ("To prune, or not to prune", 2017).

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3     for t0 <= t <= t0 + n * dt

Sparsity rises fast at first, while redundant weights abound, and slowly near the end.
"""

from __future__ import annotations

__all__ = ["cubic_sparsity"]


def cubic_sparsity(t: int, *, final: float, initial: float = 0.0, start: int = 0, steps: int = 1, every: int = 1) -> float:
    """Sparsity at step ``t`` on the cubic schedule: ``initial`` before ``start``, ``final`` after
    ``start + steps * every``.

    Example:
        >>> [round(cubic_sparsity(t, final=0.8, steps=10), 4) for t in (0, 5, 10, 20)]
        [0.0, 0.7, 0.8, 0.8]
    """
    assert steps > 0 and every > 0, "schedule needs at least one pruning step"
    if t <= start:
        return initial
    progress = min(1.0, (t - start) / (steps * every))
    return final + (initial - final) * (1.0 - progress) ** 3
