"""``edgekit ofa info|sample``: once-for-all search spaces and random subnets."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .common import emit, out, table

__all__ = ["app", "register"]

app = typer.Typer(help="Once-for-all MobileNetV3 spaces: describe them, sample subnets.", no_args_is_help=True)


@app.command("info")
def info_command(
    space: str = typer.Option("ofa-mbv3-shapes", "--space", help="ofa-mbv3-shapes | ofa-mbv3-w1.0 | ofa-mbv3-w1.2 | ofa-mbv3-tiny"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The space's skeleton, elastic choices, size, and the shipped checkpoint if any."""
    from edgekit.models.ofa import default_checkpoint, get_space, space_size

    s = get_space(space)
    checkpoint = default_checkpoint(space)
    card = None
    if checkpoint is not None and checkpoint.with_suffix(".json").is_file():
        card = json.loads(checkpoint.with_suffix(".json").read_text())
    data = {
        "space": s.name, "stages": len(s.stage_widths), "max_blocks": s.num_blocks, "stage_widths": list(s.stage_widths),
        "kernel_sizes": list(s.ks_choices), "expand_ratios": list(s.e_choices), "depths": list(s.d_choices),
        "resolutions": [min(s.resolutions), max(s.resolutions), len(s.resolutions)], "classes": s.num_classes,
        "subnets": space_size(s), "subnets_with_resolution": space_size(s, include_resolution=True),
        "checkpoint": str(checkpoint) if checkpoint and checkpoint.is_file() else None, "checkpoint_card": card,
    }

    def render() -> None:
        rows = [["stage widths", data["stage_widths"]], ["kernel sizes", data["kernel_sizes"]],
                ["expand ratios", data["expand_ratios"]], ["depths per stage", data["depths"]],
                ["resolutions", f"{min(s.resolutions)}..{max(s.resolutions)} ({len(s.resolutions)} values)"],
                ["classes", s.num_classes], ["subnets", f"{data['subnets']:.3e} ({data['subnets_with_resolution']:.3e} with resolution)"],
                ["shipped checkpoint", data["checkpoint"] or "none"]]
        out.print(table(s.name, ["", ""], rows))

    emit(data, as_json, render)


@app.command("sample")
def sample_command(
    n: int = typer.Option(5, "--n", help="How many subnets."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random.Random that samples."),
    space: str = typer.Option("ofa-mbv3-shapes", "--space", help="Search space name."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list (default: one JSON config per line)."),
) -> None:
    """Random valid subnet configs in once-for-all's {"ks", "e", "d", "r"} form, with MACs and params."""
    import random

    from edgekit.models.ofa import count_macs, count_params, get_space, sample
    from edgekit.runtimes.errors import UsageError

    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    s = get_space(space)
    rng = random.Random(seed)
    configs = [sample(s, rng) for _ in range(n)]
    data = [{**c.to_dict(), "macs": count_macs(c, s), "params": count_params(c, s)} for c in configs]
    if as_json:
        emit(data, True, lambda: None)
    else:
        for c in configs:
            out.print(c.to_json(), soft_wrap=True, highlight=False)


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(app, name="ofa")
