"""``edgekit select``: the most accurate subnet x precision x format that fits a latency budget."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit, out, plot_axes, progress, save_plot, table

__all__ = ["register"]


def _plot(path: Path, data: dict) -> None:
    figure, axes = plot_axes()
    by_option: dict[str, list] = {}
    for c in data["pareto"]:
        by_option.setdefault(f"{c['unit']}/{c['precision']}", []).append(c)
    for label, points in by_option.items():
        axes.scatter([p["latency_ms"] for p in points], [100 * p["accuracy"] for p in points], label=label, s=18)
    front = data["pareto"]
    axes.plot([p["latency_ms"] for p in front], [100 * p["accuracy"] for p in front], color="0.6", lw=1, zorder=0)
    axes.axvline(data["budget_ms"], color="crimson", ls="--", label=f"budget {data['budget_ms']:g} ms")
    best = data["best"]
    axes.scatter([best["latency_ms"]], [100 * best["accuracy"]], marker="*", s=160, color="black", label="chosen", zorder=3)
    axes.set_xlabel(f"predicted latency, ms ({best['latency_source']})")
    axes.set_ylabel("predicted top-1 accuracy, %")
    axes.set_title(f"{data['model']} on {data['target']}: Pareto front")
    save_plot(figure, axes, path)


def _accuracy_options(model: str, checkpoint: Path | None, accuracy: Path | None,
                      predictor: Path | None) -> tuple[str, Path | None]:
    """The model (the space ``--checkpoint`` fits) and the predictor path that ``--accuracy`` and
    ``--accuracy-predictor`` name."""
    from edgekit.models.ofa.released_predictor import is_released
    from edgekit.runtimes.errors import UsageError

    if accuracy is not None and predictor is not None:
        raise UsageError("pass --accuracy (once-for-all's .pth) or --accuracy-predictor (an edgekit stem), not both")
    if accuracy is not None and not is_released(accuracy):
        raise UsageError(f"--accuracy {accuracy}: expected once-for-all's released predictor, a .pth file "
                         "(an edgekit predictor stem goes to --accuracy-predictor)")
    if checkpoint is not None:
        from edgekit.models.ofa import SPACE_NAMES
        from edgekit.models.ofa_family import checkpoint_space

        if model != "ofa-mbv3" and model not in SPACE_NAMES:
            raise UsageError(f"--checkpoint takes once-for-all supernet weights: --model ofa-mbv3, not {model!r}")
        found = checkpoint_space(checkpoint)
        if model in SPACE_NAMES and model != found:
            raise UsageError(f"--checkpoint {checkpoint} is a supernet of {found}, not of --model {model}")
        model = found
    return model, accuracy if accuracy is not None else predictor


def select_command(
    model: str = typer.Option("ofa-mbv3", "--model", "-m", help="Searchable model family (ofa-mbv3)."),
    target: str = typer.Option(..., "--target", "-t", help="Target name or alias."),
    budget_ms: Optional[float] = typer.Option(None, "--budget-ms", help="Latency budget in ms (batch 1)."),
    first_token_ms: Optional[float] = typer.Option(
        None, "--budget-first-token-ms", help="Language models (--model a,b): time to the first token, ms."),
    tokens_per_s: Optional[float] = typer.Option(
        None, "--budget-tokens-per-s", help="Language models: decode speed at least this many tokens/s."),
    input_tokens: int = typer.Option(16, "--input-tokens", help="Language models: the prompt length the budget is for."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Memory budget (default: the device's memory)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="Restrict to one unit: gpu, cpu, npu, dla0, ..."),
    precision: str = typer.Option("auto", "--precision", help="auto | fp32 | fp16 | int8."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search."),
    margin: Optional[float] = typer.Option(
        None, "--margin", help="Predicted latency must fit budget / (1 + margin) (default: the target's error against "
                               "published measurements where it has one, else 0.1)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: 1 on host, all cores elsewhere)."),
    predictor: Optional[Path] = typer.Option(None, "--accuracy-predictor", help="A predictor path stem (default: shipped)."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="ofa-mbv3: supernet weights (once-for-all or edgekit); the space searched is the one they fit."),
    accuracy: Optional[Path] = typer.Option(
        None, "--accuracy", help="once-for-all's released accuracy predictor (ofa_acc_predictor.pth, its w1.0 space)."),
    eval_data: Optional[Path] = typer.Option(
        None, "--eval-data", help="Any model: labelled .npz (inputs, labels): candidates are exported and their accuracy measured."),
    metric: Optional[str] = typer.Option(None, "--metric", help="With --eval-data: top1 | miou | mse | module:function (higher is better; default: miou for a segmenter, else top1)."),
    levels: Optional[str] = typer.Option(
        None, "--levels", help="With --eval-data: compression levels to try, fractions of MACs removed by structured pruning, e.g. 0.3,0.5."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="With --eval-data: the model's example input shape."),
    resolutions: Optional[str] = typer.Option(
        None, "--resolutions", help="With --eval-data: square input sizes to try too, e.g. 96,128 (the eval images are resized)."),
    finetune_steps: int = typer.Option(300, "--finetune-steps", min=0, help="A segmenter's pruned levels: distillation fine-tuning steps on its own scenes."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the Pareto front with the budget line as PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search subnet x precision x format for the best predicted accuracy under --budget-ms on --target; with
    --eval-data, any model's candidates (compression level x precision x format x unit), measured."""
    from edgekit.runtimes.errors import UsageError

    measured = eval_data is not None or first_token_ms is not None or tokens_per_s is not None
    supernet = checkpoint is not None or accuracy is not None  # once-for-all's own files: the supernet search
    if measured and supernet:
        raise UsageError("--checkpoint / --accuracy search a once-for-all supernet; --eval-data and generation budgets "
                         "select by measurement: pass one or the other")
    if first_token_ms is not None or tokens_per_s is not None:  # language models, by generation budget
        from .select_measured import run_lm

        run_lm(model, target, first_token_ms, tokens_per_s, input_tokens, precision, as_json)
        return
    if budget_ms is None:
        raise UsageError("pass --budget-ms (or, for a language model, --budget-first-token-ms / --budget-tokens-per-s)")
    from edgekit.search.family import has_search_space

    if eval_data is not None or (not supernet and not has_search_space(model)):  # any model: exported and measured
        from .select_measured import run_measured

        run_measured(model, target, budget_ms, eval_data, metric, levels, unit, precision, margin, input_shape, as_json,
                     finetune_steps, resolutions, plot)
        return
    from edgekit.models.ofa.released_predictor import SOURCE as RELEASED_SOURCE, is_released
    from edgekit.targets import resolve_target
    from edgekit.search.run import run_selection, selection_json

    resolved = resolve_target(target, None)
    model, predictor = _accuracy_options(model, checkpoint, accuracy, predictor)
    with progress(not as_json) as say:
        say(f"searching {model} for {resolved.name} under {budget_ms:g} ms")
        family, selection = run_selection(model, resolved, budget_ms, memory_mb=memory_mb, unit=unit, precision=precision,
                                          seed=seed, threads=threads, predictor_path=predictor, margin=margin)
    data = selection_json(family, resolved, selection)
    if predictor is not None and is_released(predictor):
        data["best"]["accuracy_source"] = RELEASED_SOURCE
    if checkpoint is not None:
        data["checkpoint"] = str(checkpoint)
    if plot is not None:
        _plot(plot, data)
        data["plot"] = str(plot)

    def render() -> None:
        best = data["best"]
        out.print(f"[bold]{resolved.name}[/bold], budget {budget_ms:g} ms: {best['unit']} / {best['precision']} / "
                  f"{best['format']}; predicted {best['latency_ms']:.3f} ms ({best['latency_source']}), "
                  f"accuracy {100 * best['accuracy']:.2f}% ({best['accuracy_source']}), {best['memory_mb']:.1f} MB")
        out.print(f"subnet: {__import__('json').dumps(best['config'], separators=(',', ':'))}")
        if not best["writable"]:
            out.print(f"(edgekit cannot write {best['format']} yet: export --budget-ms chooses among "
                      f"{', '.join(data['writable_formats']) or 'nothing this target runs'})")
        rows = [[f"{c['latency_ms']:.3f}", f"{100 * c['accuracy']:.2f}", f"{c['unit']}/{c['precision']}", c["format"],
                 "yes" if c["writable"] else "no*", c["config"]["r"],
                 "yes" if c["latency_ms"] * (1 + data["margin"]) <= budget_ms else ""] for c in data["pareto"]]
        step = max(1, len(rows) // 15)
        out.print(table("Pareto front (predicted)", ["ms", "acc %", "unit/precision", "format", "writable", "res", "fits"],
                        rows[::step]))
        for fmt, why in data["not_writable"].items():
            out.print(f"* {fmt}: {why}")
        search = data["search"]
        out.print(f"searched {search['evaluated']} candidates in {search['seconds']:.2f} s ({search['generations']} generations)"
                  + (f"; skipped: {'; '.join(data['skipped_options'])}" if data["skipped_options"] else ""))
        if plot is not None:
            out.print(f"plot: {plot}")

    emit(data, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)
