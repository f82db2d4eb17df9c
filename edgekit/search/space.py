"""What the search needs from a family of candidates: the :class:`SearchSpace` protocol.

The evolutionary search (:mod:`.evolution`), the selection (:mod:`.select`) and per-block latency
(:mod:`.latency`) use nothing else, so a family plugs into ``edgekit select`` by implementing this
protocol and registering a factory (:func:`edgekit.search.family.register_search_space`). The
once-for-all spaces implement it (:class:`edgekit.models.ofa.OFASpace`).

A space's configs are hashable values. Its smallest config is the floor: the fastest and smallest
under every latency and memory model edgekit has (their per-op terms are non-negative), so when it
does not fit a budget nothing does. A config runs as a sequence of blocks: pure specs (no torch) with
a stable ``key`` (block tables store measured latency under it) and their ``ops()`` (the roofline and
calibrated models predict from them); latency is predicted once per distinct key and summed.

Example, a 1-D space of widths whose one block is a matmul (latency grows with width, and so does
accuracy):

    >>> import random
    >>> from edgekit.targets.latency import OpCost
    >>> class Layer:
    ...     def __init__(self, width): self.key, self.width = f"fc{width}", width
    ...     def ops(self): return [OpCost("matmul", 64 * self.width * 1000, 64 * self.width, 64 + self.width)]
    >>> class Widths:
    ...     name, widths = "widths", (8, 16, 32, 64, 128)
    ...     def sample(self, rng): return rng.choice(self.widths)
    ...     def mutate(self, w, rng, prob=0.1): return rng.choice(self.widths) if rng.random() < prob else w
    ...     def crossover(self, a, b, rng): return a if rng.random() < 0.5 else b
    ...     def smallest(self): return self.widths[0]
    ...     def blocks(self, w): return [Layer(w)]
    ...     def macs(self, w): return 64 * w * 1000
    ...     def params(self, w): return 64 * w
    ...     def memory_mb(self, w, precision): return 64 * w * 4 / 1e6
    ...     def accuracy_model(self, path=None): return None
    ...     def config_dict(self, w): return {"width": w}
    ...     def config_label(self, w): return f"width {w}"
    >>> isinstance(Widths(), SearchSpace)
    True
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Hashable, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from edgekit.targets.latency import OpCost

__all__ = ["AccuracyModel", "Block", "SearchSpace"]

Config = TypeVar("Config", bound=Hashable)


@runtime_checkable
class Block(Protocol):
    """One block a config runs: a pure spec with a stable key and the ops of its exported graph."""

    @property
    def key(self) -> str: ...

    def ops(self) -> Sequence[OpCost]: ...


@runtime_checkable
class AccuracyModel(Protocol):
    """Predicted accuracy of configs at a precision (fractions); ``precisions`` are the ones it knows."""

    @property
    def precisions(self) -> Sequence[str]: ...

    def predict(self, configs: Sequence[Any], precision: str = "fp32") -> np.ndarray: ...


@runtime_checkable
class SearchSpace(Protocol[Config]):
    """A family of candidate models the evolutionary search can explore (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def sample(self, rng: random.Random) -> Config:
        """A random config drawn with ``rng`` (the search's only source of randomness)."""

    def mutate(self, config: Config, rng: random.Random, prob: float = 0.1) -> Config:
        """``config`` with each gene resampled with probability ``prob``."""

    def crossover(self, a: Config, b: Config, rng: random.Random) -> Config:
        """A child taking each gene from ``a`` or ``b``."""

    def smallest(self) -> Config:
        """The fastest and smallest config (latency and memory never lower for any other)."""

    def blocks(self, config: Config) -> Sequence[Block]:
        """The blocks ``config`` runs, in order."""

    def macs(self, config: Config) -> int:
        """Multiply-accumulates of one inference."""

    def params(self, config: Config) -> int:
        """Parameters of the model."""

    def memory_mb(self, config: Config, precision: str) -> float:
        """Predicted memory (weights and live activations) at ``precision``, in MB."""

    def accuracy_model(self, path: str | Path | None = None) -> AccuracyModel:
        """The accuracy predictor shipped for this space, or the one at ``path``."""

    def config_dict(self, config: Config) -> dict[str, Any]:
        """``config`` as JSON-ready data (how ``edgekit select --json`` prints it)."""

    def config_label(self, config: Config) -> str:
        """A short phrase naming ``config`` in messages (``subnet at 32px``)."""
