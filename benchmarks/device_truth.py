"""Hold edgekit's latency predictions against published real-device measurements (targets/truth).

For every published point whose device, unit, runtime and precision edgekit models and whose model has a
reference architecture (edgekit.models.reference, op costs in targets/truth/opcosts.json):

- before: the datasheet roofline (``predict_ms`` over the target TOML's peaks and bandwidth);
- after: the fit to published points (edgekit.targets.published), cross-validated: each point is
  predicted by a fit that never saw its model (leave-one-model-out); a group with one model has no
  such fit, so its points keep the roofline.

Per target and overall: share within x1.25 / x1.5 / x2, median ratio error, Kendall tau per device with
>= 5 points; a point with no prediction is a miss (counted outside every band). Points timed with
another runtime than the unit's (ncnn, TensorFlow) are listed apart, never fitted. Pure arithmetic over
published numbers: no timing, so the shared machine's noise does not enter.

    python benchmarks/device_truth.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import print_table, write_result  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from edgekit.targets import load_target  # noqa: E402
from edgekit.targets.latency import OpCost, predict_ms  # noqa: E402
from edgekit.targets.published import (  # noqa: E402
    cross_validate, fit_points, load_costs, point_features, ratio_error)
from edgekit.targets.truth import load_points, point_key, published_path  # noqa: E402

GOALS = {"within_1.5": 0.70, "within_1.25": 0.40, "median_error": 1.3, "tau": 0.8}


def roofline(point, costs) -> float | None:
    ops = [OpCost(kind, macs, weights, activations) for kind, macs, weights, activations in costs[point_key(point)]["nodes"]]
    return predict_ms(ops, load_target(point.target), point.unit, point.precision, point.threads).ms


def summary(rows: list[dict], key: str) -> dict:
    errors = [ratio_error(r[key], r["ms"]) for r in rows if r[key] is not None]
    n = len(rows)
    share = {f"within_{band}": round(sum(e <= band for e in errors) / n, 3) if n else None for band in (1.25, 1.5, 2)}
    return {"n": n, **share, "median_error": round(statistics.median(errors), 3) if errors else None,
            "misses": n - len(errors)}


def taus(rows: list[dict], key: str) -> dict:
    found = {}
    for target in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == target and r[key] is not None]
        if len(mine) >= 5:
            found[target] = round(float(kendalltau([r["ms"] for r in mine], [r[key] for r in mine]).statistic), 3)
    return found


def main() -> None:
    points, costs = load_points(published_path()), load_costs()
    fits = fit_points(points, costs)
    groups: dict = {}
    for p in points.comparable:
        if point_key(p) in costs:
            groups.setdefault(p.group, []).append(p)
    rows = []
    for group, members in sorted(groups.items()):
        cv = cross_validate(members, costs)
        for i, p in enumerate(members):
            before = roofline(p, costs)
            after = cv.get(i, before)
            rows.append({"target": p.target, "unit": p.unit, "runtime": p.runtime, "precision": p.precision,
                         "model": point_key(p), "ms": p.ms, "before": before, "after": after,
                         "after_kind": "cross-validated fit" if i in cv else "roofline (one model: no fit without it)",
                         "in_sample": fits[group].predict_features(point_features(p, costs))})
    no_reference = [p for p in points.comparable if point_key(p) not in costs]
    table = []
    for target in sorted({r["target"] for r in rows}) + ["overall"]:
        mine = [r for r in rows if target in ("overall", r["target"])]
        b, a = summary(mine, "before"), summary(mine, "after")
        table.append([target, b["n"], *(f"{b[k]:.0%}" for k in ("within_1.25", "within_1.5", "within_2")),
                      f"x{b['median_error']:.2f}" if b["median_error"] else "-", b["misses"],
                      *(f"{a[k]:.0%}" for k in ("within_1.25", "within_1.5", "within_2")),
                      f"x{a['median_error']:.2f}" if a["median_error"] else "-", a["misses"]])
    print_table("published points: before (datasheet roofline) | after (published calibration, leave-one-model-out)",
                ["target", "n", "b<=1.25", "b<=1.5", "b<=2", "b med", "b miss", "a<=1.25", "a<=1.5", "a<=2", "a med",
                 "a miss"], table)
    print()
    print_table("every point", ["target", "unit", "runtime", "prec", "model", "published ms", "before", "after (cv)", "after is"],
                [[r["target"], r["unit"], r["runtime"], r["precision"], r["model"], r["ms"],
                  "miss" if r["before"] is None else f"{r['before']:.3g}", "miss" if r["after"] is None else f"{r['after']:.3g}",
                  r["after_kind"]] for r in rows])
    tau_before, tau_after = taus(rows, "before"), taus(rows, "after")
    print(f"\nKendall tau per device with >= 5 points: before {tau_before}, after {tau_after}")
    print(f"comparable but no reference architecture (not predicted): "
          f"{', '.join(sorted({f'{p.target}:{point_key(p)}' for p in no_reference}))}")
    apart: dict = {}
    for p, reason in points.apart:
        apart.setdefault(f"{p.target} {p.unit} {p.runtime} {p.precision}", []).append(p)
    print("shown apart (another runtime or precision than edgekit models there; not fitted):")
    for key, members in sorted(apart.items()):
        print(f"  {key}: " + ", ".join(f"{point_key(p)}{'' if p.threads is None else f'/{p.threads}t'} {p.ms:g} ms" for p in members))
    overall_b, overall_a = summary(rows, "before"), summary(rows, "after")
    goals = {
        "within_1.5": overall_a["within_1.5"] >= GOALS["within_1.5"],
        "within_1.25": overall_a["within_1.25"] >= GOALS["within_1.25"],
        "median_error": overall_a["median_error"] <= GOALS["median_error"],
        "tau": all(t >= GOALS["tau"] for t in tau_after.values()),
        "no_silent_miss": overall_a["misses"] == 0,
    }
    print(f"\ngoals, after (leave-one-model-out) vs before (datasheet roofline), over {overall_a['n']} points:")
    print(f"  within x1.5:  {overall_a['within_1.5']:.0%} (goal >= 70%, before {overall_b['within_1.5']:.0%}): "
          f"{'met' if goals['within_1.5'] else 'NOT met'}")
    print(f"  within x1.25: {overall_a['within_1.25']:.0%} (goal >= 40%, before {overall_b['within_1.25']:.0%}): "
          f"{'met' if goals['within_1.25'] else 'NOT met'}")
    print(f"  median ratio error: x{overall_a['median_error']:.2f} (goal <= x1.3, before x{overall_b['median_error']:.2f} "
          f"over the points it predicted): {'met' if goals['median_error'] else 'NOT met'}")
    print(f"  Kendall tau per device with >= 5 points: {tau_after} (goal >= 0.8, before {tau_before}): "
          f"{'met' if goals['tau'] else 'NOT met'}")
    print(f"  misses: {overall_a['misses']} (goal 0, before {overall_b['misses']}; with the Raspberry Pi 4 profile as it was, "
          f"before fp16 was added to it, its 3 points were misses too)")
    write_result("device_truth", {
        "note": "pure arithmetic over published numbers (no timing)", "goals": GOALS, "goals_met": goals,
        "overall": {"before": overall_b, "after": overall_a},
        "per_target": {t: {"before": summary([r for r in rows if r["target"] == t], "before"),
                           "after": summary([r for r in rows if r["target"] == t], "after")}
                       for t in sorted({r["target"] for r in rows})},
        "kendall_tau": {"before": tau_before, "after": tau_after}, "points": rows,
        "no_reference_model": [f"{p.target}:{point_key(p)}:{p.ms}" for p in no_reference],
        "apart": {k: [f"{point_key(p)}:{p.ms}" for p in v] for k, v in apart.items()},
    })


if __name__ == "__main__":
    main()
