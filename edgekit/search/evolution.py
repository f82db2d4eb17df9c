"""Evolutionary search over (config, deployment option) under a latency and memory budget.

Works on any :class:`~edgekit.search.space.SearchSpace` (sample, mutate, crossover, smallest).
Bounded everywhere (generations, a time limit, sampling attempts) and driven by an injected
``random.Random``. The objective is predicted accuracy at the option's precision; constraints are
predicted latency and memory. Also returns the Pareto front (latency vs accuracy) of everything it
evaluated, and raises :class:`NoFeasibleCandidate` with the fastest candidate when nothing fits.

Example:
    >>> import random
    >>> from edgekit.models.ofa import get_space
    >>> space = get_space("ofa-mbv3-tiny")
    >>> evaluate = lambda configs, option: ([float(sum(c.d)) for c in configs], [0.5 + 0.01 * sum(c.e) for c in configs])
    >>> result = evolve(space, ["cpu/fp32"], evaluate, Budget(12.0), random.Random(0), population=20, generations=5)
    >>> result.best.latency_ms <= 12.0
    True
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

from edgekit.runtimes.errors import EdgekitError, UsageError

from .space import SearchSpace

__all__ = ["Budget", "Candidate", "SearchResult", "NoFeasibleCandidate", "evolve", "pareto_front"]

# evaluate(configs, option) -> (latencies in ms, accuracies as fractions), one value per config
Evaluate = Callable[[Sequence, Hashable], tuple[Sequence[float], Sequence[float]]]


@dataclass(frozen=True)
class Budget:
    latency_ms: float
    memory_mb: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.latency_ms, (int, float)) or not 0 < self.latency_ms < float("inf"):
            raise UsageError(f"--budget-ms must be a number > 0, got {self.latency_ms!r}")
        if self.memory_mb is not None and not 0 < self.memory_mb < float("inf"):
            raise UsageError(f"--memory-mb must be a number > 0, got {self.memory_mb!r}")


@dataclass(frozen=True)
class Candidate:
    config: object
    option: Hashable
    latency_ms: float
    accuracy: float
    memory_mb: float = 0.0

    def fits(self, budget: Budget) -> bool:
        return self.latency_ms <= budget.latency_ms and (budget.memory_mb is None or self.memory_mb <= budget.memory_mb)


@dataclass(frozen=True)
class SearchResult:
    best: Candidate
    pareto: tuple[Candidate, ...]
    evaluated: int
    seconds: float
    generations: int


class NoFeasibleCandidate(EdgekitError):
    """No candidate meets the budget; ``fastest`` is the quickest one found (with its latency)."""

    def __init__(self, message: str, fastest: Candidate) -> None:
        self.fastest = fastest
        super().__init__(message)


def pareto_front(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    """Candidates no other candidate beats on both latency (lower) and accuracy (higher), by latency."""
    front: list[Candidate] = []
    best_accuracy = float("-inf")
    for candidate in sorted(candidates, key=lambda c: (c.latency_ms, -c.accuracy)):
        if candidate.accuracy > best_accuracy:
            front.append(candidate)
            best_accuracy = candidate.accuracy
    return tuple(front)


def evolve(
    space: SearchSpace, options: Sequence[Hashable], evaluate: Evaluate, budget: Budget, rng: random.Random, *,
    memory: Callable[[object, Hashable], float] | None = None, population: int = 100, generations: int = 30,
    parent_ratio: float = 0.25, mutation_ratio: float = 0.5, mutate_prob: float = 0.1, time_limit_s: float | None = None,
    sample_attempts: int = 50,
) -> SearchResult:
    """Search configs x options for the highest predicted accuracy within ``budget``."""
    if not options:
        raise UsageError("no deployment option to search (unit x precision x format)")
    started = time.perf_counter()
    memory = memory or (lambda config, option: 0.0)
    seen: dict[tuple, Candidate] = {}

    def score(genomes: Sequence[tuple[object, Hashable]]) -> list[Candidate]:
        by_option: dict[Hashable, list[object]] = {}
        for config, option in genomes:
            by_option.setdefault(option, []).append(config)
        scored = []
        for option, configs in by_option.items():
            latencies, accuracies = evaluate(configs, option)
            for config, ms, accuracy in zip(configs, latencies, accuracies):
                candidate = Candidate(config, option, float(ms), float(accuracy), float(memory(config, option)))
                seen[(config, option)] = candidate
                scored.append(candidate)
        return scored

    # The smallest config on every option: the fastest candidates, and the answer when nothing fits. The
    # protocol promises nothing is faster or smaller (for OFA: latency and memory grow with kernel, expand,
    # depth and resolution under every edgekit model), so when these do not fit, stop without sampling.
    floor = score([(space.smallest(), option) for option in options])
    fastest = min(floor, key=lambda c: c.latency_ms)
    feasible = [c for c in floor if c.fits(budget)]
    attempts = 0
    while feasible and len(feasible) < population and attempts < population * sample_attempts:
        batch = [(space.sample(rng), rng.choice(list(options))) for _ in range(population)]
        attempts += len(batch)
        feasible += [c for c in score(batch) if c.fits(budget)]
    if not feasible:
        limit = f"{budget.latency_ms:g} ms" + (f" and {budget.memory_mb:g} MB" if budget.memory_mb else "")
        raise NoFeasibleCandidate(
            f"no candidate meets {limit}: the fastest is {fastest.latency_ms:.3f} ms "
            f"({fastest.option}, smallest {space.config_label(fastest.config)}, {fastest.memory_mb:.1f} MB)", fastest)
    current = sorted(feasible, key=lambda c: -c.accuracy)[:population]
    done = 0
    for done in range(1, generations + 1):
        if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
            break
        parents = current[: max(2, int(population * parent_ratio))]
        children = []
        for i in range(population - len(parents)):
            if i < int(population * mutation_ratio) or len(parents) < 2:
                parent = rng.choice(parents)
                option = rng.choice(list(options)) if rng.random() < mutate_prob else parent.option
                children.append((space.mutate(parent.config, rng, mutate_prob), option))
            else:
                a, b = rng.sample(parents, 2)
                children.append((space.crossover(a.config, b.config, rng), rng.choice((a.option, b.option))))
        fresh = [g for g in children if g not in seen]
        scored = score(fresh) + [seen[g] for g in children if g in seen and g not in fresh]
        current = sorted(parents + [c for c in scored if c.fits(budget)], key=lambda c: -c.accuracy)[:population]
    best = current[0]
    return SearchResult(best, pareto_front(list(seen.values())), len(seen), time.perf_counter() - started, done)
