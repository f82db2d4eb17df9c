"""Run a selection for a model family on a target, and describe the result as plain data.

Example:
    >>> from edgekit.targets import load_target
    >>> family, selection = run_selection("ofa-mbv3", load_target("jetson"), 2.0)   # doctest: +SKIP
    >>> selection_json(family, load_target("jetson"), selection)["best"]["latency_source"]   # doctest: +SKIP
    'modeled'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_selection", "selection_json"]


def run_selection(model: str | None, target, budget_ms: float, *, memory_mb: float | None = None,
                  unit: str | None = None, precision: str = "auto", seed: int = 0, threads: int | None = None,
                  writable_only: bool = False, predictor_path: Path | None = None, margin: float | None = None):
    """Search the family of ``model`` for ``target``; returns (family, Selection).

    CPU predictions default to 1 thread on the host (as edgekit measures there) and all cores elsewhere.
    """
    from .family import searchable
    from .select import select

    family = searchable(model)
    threads = threads if threads is not None else (1 if target.name == "host" else None)
    selection = select(family.space, target, budget_ms, family.predictor(predictor_path), memory_limit_mb=memory_mb,
                       unit=unit, precision=precision, seed=seed, threads=threads, writable_only=writable_only,
                       tables=family.tables(target, threads), margin=margin)
    return family, selection


def selection_json(family, target, selection) -> dict:
    """The chosen candidate, the Pareto front and the search's statistics as JSON-ready data; each candidate
    says whether edgekit can write its format yet, and ``not_writable`` names the formats it cannot."""
    from .select import writable

    best = selection.result.best

    def candidate(c):
        return {"config": family.space.config_dict(c.config), "unit": c.option.unit, "precision": c.option.precision,
                "format": c.option.format, "writable": writable(c.option.format), "latency_ms": round(c.latency_ms, 4),
                "accuracy": round(c.accuracy, 4), "memory_mb": round(c.memory_mb, 3)}

    shown = [best, *selection.result.pareto]

    return {
        "model": family.name, "space": family.space.name, "target": target.name,
        "budget_ms": selection.budget.latency_ms, "memory_limit_mb": selection.budget.memory_mb, "threads": selection.threads,
        "margin": selection.margin,
        "best": {**candidate(best), "latency_source": selection.sources[best.option], "accuracy_source": "predicted"},
        "pareto": [candidate(c) for c in selection.result.pareto],
        "search": {"evaluated": selection.result.evaluated, "generations": selection.result.generations,
                   "seconds": round(selection.result.seconds, 3)},
        "latency_sources": {str(o): s for o, s in selection.sources.items()},
        "skipped_options": list(selection.skipped),
        "not_writable": {fmt: "planned, edgekit cannot write it yet"
                         for fmt in dict.fromkeys(c.option.format for c in shown) if not writable(fmt)},
        "writable_formats": [fmt for fmt in target.formats if writable(fmt)],
    }
