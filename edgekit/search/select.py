"""Choose config x precision x format for a target under a latency (and memory) budget.

Deployment options are every (unit, precision) the target's profile allows, each with the unit's
format; ``writable_only`` keeps the formats edgekit can write today (for ``export --budget-ms``).
The candidates come from any :class:`~edgekit.search.space.SearchSpace` (a once-for-all space here).
Latency comes from :class:`SubnetLatency` over the config's blocks (measured block table > calibrated >
modeled, per option), memory from the space, accuracy from the space's accuracy model (for OFA the
supernet's predictor minus the measured precision effect).

Example:
    >>> import random
    >>> from edgekit.models.ofa import AccuracyPredictor, get_space, sample
    >>> from edgekit.targets import load_target
    >>> space = get_space("ofa-mbv3-tiny")
    >>> rng = random.Random(0)
    >>> configs = [sample(space, rng) for _ in range(40)]
    >>> predictor, _ = AccuracyPredictor.fit(space, configs, [0.4 + 0.02 * sum(c.d) for c in configs], epochs=50)
    >>> predictor.precision_drop = {"fp32": 0.0, "fp16": 0.0, "int8": 0.01}
    >>> selection = select(space, load_target("jetson"), 1.0, predictor, seed=0, population=16, generations=3)
    >>> best = selection.result.best
    >>> best.latency_ms <= 1.0, best.option.precision != "int8"   # int8 costs accuracy here, for no gain
    (True, True)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from edgekit.exporters.base import writable
from edgekit.runtimes.errors import EdgekitError, TargetError, UsageError
from edgekit.runtimes.precision import PRECISIONS

from .evolution import Budget, NoFeasibleCandidate, SearchResult, evolve
from .latency import SubnetLatency
from .space import AccuracyModel, SearchSpace

__all__ = ["Option", "Selection", "deployment_options", "select", "writable", "default_margin", "FIXED_MARGIN"]

FIXED_MARGIN = 0.1  # the margin for prediction error where no published fit says how large it is


@dataclass(frozen=True)
class Option:
    unit: str
    precision: str
    format: str

    def __str__(self) -> str:
        return f"{self.unit}/{self.precision}/{self.format}"


@dataclass(frozen=True)
class Selection:
    result: SearchResult
    sources: dict  # Option -> latency source ("calibrated" / "modeled")
    skipped: tuple[str, ...]  # options that could not be predicted, with the reason
    threads: int | None
    budget: Budget  # as the user gave it
    margin: float = 0.0  # predicted latency had to fit budget / (1 + margin)


def deployment_options(target, unit: str | None = None, precision: str = "auto", writable_only: bool = False,
                       all_formats: bool = False) -> list[Option]:
    """Every (unit, precision, format) to consider, checked against the target's profile: each unit's first
    format, or with ``all_formats`` each of them (the measured selections export every one).

    Example:
        >>> from edgekit.targets import load_target
        >>> [str(o) for o in deployment_options(load_target("rpi5"), precision="fp32", all_formats=True)]
        ['cpu/fp32/tflite', 'cpu/fp32/onnx']
    """
    units = [target.unit(unit)] if unit else list(target.units)
    if precision != "auto" and precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
    options = []
    for u in units:
        formats = [f for f in u.formats if not writable_only or writable(f)]
        if not formats:
            continue
        precisions = u.precisions if precision == "auto" else ((precision,) if precision in u.precisions else ())
        if unit and precision != "auto" and not precisions:
            raise UsageError(f"unit {u.name} of {target.name} does not run {precision}; it runs {', '.join(u.precisions)}")
        options += [Option(u.name, p, fmt) for p in precisions for fmt in (formats if all_formats else formats[:1])]
    if not options:
        what = "formats edgekit can write" if writable_only else "options"
        raise UsageError(f"target {target.name} has no {what} for unit {unit or 'any'} at precision {precision}")
    return options


def default_margin(models) -> float:
    """The margin for prediction error over the options' latency models: the largest of the published
    fits' cross-validated errors (x1.3 -> 0.3) and 10% for options without one, at most 0.9.

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> from edgekit.targets import load_target
        >>> from .latency import SubnetLatency
        >>> space = get_space("ofa-mbv3-tiny")
        >>> default_margin([SubnetLatency(space, load_target("jetson"), "gpu", "fp16")])
        0.288
        >>> default_margin([SubnetLatency(space, load_target("jetson"), "gpu", "int8")])
        0.1
    """
    margins = [round(m.published.error - 1.0, 3) if getattr(m, "published", None) is not None else FIXED_MARGIN
               for m in models]
    return min(max(margins, default=FIXED_MARGIN), 0.9)


def select(
    space: SearchSpace, target, budget_ms: float, accuracy: AccuracyModel, *, memory_limit_mb: float | None = None,
    unit: str | None = None, precision: str = "auto", seed: int = 0, threads: int | None = None,
    writable_only: bool = False, population: int = 100, generations: int = 30, time_limit_s: float | None = 5.0,
    tables: dict | None = None, directory: Path | None = None, margin: float | None = None,
) -> Selection:
    """Evolutionary search for the most accurate candidate under the budget on ``target``.

    ``margin`` keeps a safety gap for prediction error: a candidate's predicted latency must fit
    ``budget / (1 + margin)``. Choosing right at the budget edge misses it about half the time, since
    predictions err both ways (median 4-5% against measurement on this host, see benchmarks/).
    By default it is :func:`default_margin` of the options searched: the cross-validated error of the
    target's fit to published measurements where an option has one, else 10%.
    """
    if margin is not None and not 0.0 <= margin < 1.0:
        raise UsageError(f"--margin must be in [0, 1), got {margin}")
    budget = Budget(budget_ms, memory_limit_mb if memory_limit_mb is not None else
                    (target.memory_gb * 1000 if target.memory_gb else None))
    options, models, skipped = [], {}, []
    for option in deployment_options(target, unit, precision, writable_only):
        if option.precision not in accuracy.precisions:
            skipped.append(f"{option}: accuracy effect of {option.precision} not measured")
            continue
        try:
            table = (tables or {}).get(option.precision)
            model = SubnetLatency(space, target, option.unit, option.precision, threads, table=table, directory=directory)
            model.predict(space.smallest())
        except TargetError as exc:
            skipped.append(f"{option}: {exc}")
            continue
        options.append(option)
        models[option] = model
    if not options:
        raise EdgekitError(f"no option of {target.name} can be predicted: " + "; ".join(skipped))
    if margin is None:
        margin = default_margin([models[o] for o in options])
    search_budget = Budget(budget_ms / (1.0 + margin), budget.memory_mb)
    if budget.memory_mb is not None:
        smallest_mb = min(space.memory_mb(space.smallest(), o.precision) for o in options)
        if smallest_mb > budget.memory_mb:
            raise UsageError(f"--memory-mb {budget.memory_mb:g} is below the smallest model ({smallest_mb:.1f} MB)")

    def evaluate(configs, option):
        return [models[option].predict(c) for c in configs], accuracy.predict(configs, option.precision)

    try:
        result = evolve(space, options, evaluate, search_budget, random.Random(seed), population=population,
                        generations=generations, memory=lambda config, option: space.memory_mb(config, option.precision),
                        time_limit_s=time_limit_s)
    except NoFeasibleCandidate as exc:
        fastest = exc.fastest
        limit = f"{budget_ms:g} ms" + (f" and {budget.memory_mb:g} MB" if budget.memory_mb else "")
        raise NoFeasibleCandidate(
            f"no candidate meets {limit} (with a {100 * margin:g}% margin for prediction error): the fastest is "
            f"{fastest.latency_ms:.3f} ms ({fastest.option}, smallest {space.config_label(fastest.config)}, "
            f"{fastest.memory_mb:.1f} MB)", fastest) from None
    return Selection(result, {o: models[o].source for o in options}, tuple(skipped), threads, budget, margin)
