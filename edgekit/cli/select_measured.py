"""``edgekit select --eval-data``: the measured selection's options, run and table (edgekit.measured_select)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .common import emit, out, plot_axes, progress, save_plot, table

__all__ = ["run_measured", "run_lm", "parse_levels"]


def parse_levels(text: Optional[str]) -> tuple[float, ...] | None:
    """``--levels 0.3,0.5`` -> (0.0, 0.3, 0.5): the model as given is always a candidate (None: the default).

    Example:
        >>> parse_levels("0.3,0.5"), parse_levels(None)
        ((0.0, 0.3, 0.5), None)
    """
    from edgekit.runtimes.errors import UsageError

    if not text:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--levels {text!r}: expected comma-separated fractions of MACs to remove, e.g. 0.3,0.5") from None
    return tuple(dict.fromkeys((0.0, *values)))


def _sizes(text: Optional[str]) -> tuple[int, ...] | None:
    from edgekit.runtimes.errors import UsageError

    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--resolutions {text!r}: expected comma-separated sizes in pixels, e.g. 96,128") from None


def _plot(path: Path, selection: Any, data: dict[str, Any]) -> None:
    """Every candidate (latency vs measured accuracy), the measured front and the budget line, as PNG."""
    figure, axes = plot_axes()
    measured = [r for r in selection.results if r.accuracy is not None]
    axes.scatter([r.latency_ms for r in measured], [r.accuracy for r in measured], s=18, label="measured")
    front = selection.front
    axes.plot([r.latency_ms for r in front], [r.accuracy for r in front], color="0.6", lw=1, zorder=0, label="front")
    axes.axvline(selection.budget_ms, color="crimson", ls="--", label=f"budget {selection.budget_ms:g} ms")
    axes.scatter([selection.best.latency_ms], [selection.best.accuracy], marker="*", s=160, color="black", label="chosen")
    axes.set_xlabel(f"latency, ms ({selection.best.latency_source})")
    axes.set_ylabel(f"{selection.metric.name} (measured)")
    axes.set_title(f"{data['model']} on {data['target']}")
    save_plot(figure, axes, path)


def run_measured(model: str, target: str, budget_ms: float, eval_data: Optional[Path], metric: Optional[str],
                 levels: Optional[str],
                 unit: Optional[str], precision: str, margin: Optional[float], input_shape: Optional[str],
                 as_json: bool, finetune_steps: int = 300, resolutions: Optional[str] = None,
                 plot: Optional[Path] = None) -> dict[str, Any]:
    """Select ``model``'s best candidate by measurement and print it (table or JSON); returns the record."""
    from edgekit.measured_select import MeasuredRequest, select_measured, selection_record
    from edgekit.models.registry import ModelRequest, parse_shape

    request = MeasuredRequest(ModelRequest(model, parse_shape(input_shape) if input_shape else None), eval_data, metric,
                              target, budget_ms, parse_levels(levels), unit=unit, precision=precision, margin=margin,
                              finetune_steps=finetune_steps, resolutions=_sizes(resolutions))
    with progress(not as_json) as say:
        selection = select_measured(request, say)
    data = selection_record(selection, request)
    if plot is not None:
        _plot(plot, selection, data)
        data["plot"] = str(plot)

    def render() -> None:
        best, shown = data["best"], selection.metric.display
        out.print(f"[bold]{data['target']}[/bold], budget {budget_ms:g} ms: {selection.best.candidate.label()}; "
                  f"{best['latency_ms']:.3f} ms ({best['latency_source']}), {shown(best['accuracy'])} "
                  f"({best['accuracy_source']})")
        rows = [[r.candidate.label(), f"{r.latency_ms:.3f}", r.latency_source, shown(r.accuracy) if r.accuracy is not None
                 else "not measured", "yes" if selection.fits(r) else ""] for r in sorted(selection.results, key=lambda r: r.latency_ms)]
        out.print(table(f"candidates ({selection.metric.name} measured on {data['eval_samples']} eval samples, "
                        f"{data['calibration_samples']} kept for int8 calibration)",
                        ["candidate", "ms", "latency source", selection.metric.name, "fits"], rows))
        counts = data["measured"]
        out.print(f"{counts['candidates']} candidates, accuracy measured for {counts['accuracy_measured']} "
                  f"({counts['accuracy_runs_now']} now, the rest from the cache); {counts['exported_now']} files exported now")

    emit(data, as_json, render)
    return data


def run_lm(models: str, target: str, first_token_ms: Optional[float], tokens_per_s: Optional[float], input_tokens: int,
           precision: str, as_json: bool) -> dict[str, Any]:
    """Select among language-model bundles (``--model a,b``) by a generation budget (edgekit.lm_select); print it."""
    from edgekit.lm_select import LmRequest, select_lm

    request = LmRequest(tuple(m.strip() for m in models.split(",") if m.strip()), target, first_token_ms, tokens_per_s,
                        input_tokens, precision)
    with progress(not as_json) as say:
        selection = select_lm(request, say)
    data = selection.to_json()

    def render() -> None:
        best = selection.best
        limits = " and ".join(text for text in (
            f"first token <= {first_token_ms:g} ms" if first_token_ms is not None else "",
            f">= {tokens_per_s:g} tokens/s" if tokens_per_s is not None else "") if text)
        out.print(f"[bold]{data['target']}[/bold], {limits} at {input_tokens} input tokens: {best.label()}; first token "
                  f"{best.first_token_ms:.3f} ms, {best.tokens_per_s:.0f} tokens/s ({best.speed_source}), "
                  f"accuracy {100 * best.accuracy:.1f}% ({best.accuracy_source})")
        rows = [[c.label(), f"{c.first_token_ms:.3f}", f"{c.tokens_per_s:.0f}", c.speed_source, f"{100 * c.accuracy:.1f}%",
                 "yes" if selection.fits(c) else ""] for c in selection.candidates]
        out.print(table("candidates", ["model / format / precision", "first token ms", "tokens/s", "speed", "accuracy",
                                       "fits"], rows))
        for line in data["skipped"]:
            out.print(f"skipped: {line}", markup=False)

    emit(data, as_json, render)
    return data
