"""Latency-constrained selection on the host, end to end, against brute force.

1. Measured block tables for the shipped space on this host at 1 thread, for fp32 and for int8
   (``edgekit lut build --precision P``: every block exported, converted and timed, then fitted to
   whole subnets), so neither precision is predicted from assumptions.
2. For 10 budgets spread over the feasible range: search (time it), export the chosen subnet x
   precision through the real pipeline, measure the bundle on this host (1 thread), and compare the
   chosen candidate's predicted accuracy with the best of 5,000 random subnets under the same budget
   (brute force over the same predictors); also measure the chosen subnet's held-out accuracy.

    python benchmarks/selection.py [--budgets 10] [--brute 5000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_result  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--brute", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--fit-subnets", type=int, default=12)
    args = parser.parse_args(argv)

    import os

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="edgekit-selection-"))
    os.environ["EDGEKIT_CACHE_DIR"] = str(work / "cache")  # a fresh store: measure everything now

    from edgekit.models.ofa import build_supernet, largest, make_shapes, sample, smallest
    from edgekit.models.ofa.blocks import subnet_blocks
    from edgekit.models.ofa.data import CALIBRATION_SEED, HELDOUT_SEED
    from edgekit.models.ofa.train import evaluate_subnet
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle
    from edgekit.profiling import build_block_table, fit_configs, time_subnets
    from edgekit.search.family import searchable
    from edgekit.search.latency import SubnetLatency
    from edgekit.search.select import select
    from edgekit.targets import load_target
    from edgekit.targets.predictor import table_file, tables_dir

    started = time.time()

    def log(message):
        print(f"[{time.time() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    host = load_target("host")
    family = searchable("ofa-mbv3")
    space = family.space
    predictor = family.predictor()
    tables = {}
    for precision in ("fp32", "int8"):
        log(f"building the {precision} block table")
        raw = build_block_table(space, space.resolutions, threads=1, runs=args.runs, precision=precision)
        configs = fit_configs(space, args.fit_subnets, 0, space.resolutions)
        timings = time_subnets(space, configs, threads=1, runs=args.runs, precision=precision)
        table = raw.fit([[b.key for b in subnet_blocks(c, space)] for c in configs], [t.stats.p50_ms for t in timings])
        path = table_file(tables_dir(), space.name, "host", precision, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
        tables[precision] = table

    models = {p: SubnetLatency(space, host, "cpu", p, 1, table=family.tables(host, 1).get(p)) for p in ("fp32", "int8")}
    low = min(m.predict(smallest(space)) for m in models.values())
    high = max(m.predict(largest(space)) for m in models.values())
    budgets = list(np.round(np.linspace(low * 1.1, high, args.budgets), 3))
    rng = random.Random(99)
    pool = [sample(space, rng) for _ in range(args.brute)]
    pool_latency = {p: np.array([m.predict(c) for c in pool]) for p, m in models.items()}
    pool_accuracy = {p: predictor.predict(pool, p) for p in models}

    supernet = build_supernet(space.name, "default")
    images, labels = make_shapes(2000, seed=HELDOUT_SEED, size=64)
    calib, _ = make_shapes(512, seed=CALIBRATION_SEED, size=64)
    rows = []
    for budget in budgets:
        log(f"budget {budget} ms")
        t0 = time.perf_counter()
        selection = select(space, host, float(budget), predictor, threads=1, writable_only=True, seed=0,
                           tables=family.tables(host, 1))
        search_s = time.perf_counter() - t0
        best = selection.result.best
        brute = max((float(pool_accuracy[p][pool_latency[p] <= budget].max()) for p in models
                     if (pool_latency[p] <= budget).any()), default=None)  # None: no random subnet fits
        request = ExportRequest(out=work / f"b{budget}", model=ModelRequest("ofa-mbv3", subnet=best.config.to_json()),
                                target="host", output=OutputConfig(precision=best.option.precision),
                                measure=MeasureConfig(runs=100))
        manifest = export_bundle(request).manifest
        measured = manifest.latency[0]["ms"]
        accuracy = evaluate_subnet(supernet, best.config, images, labels, calib)
        rows.append({"budget_ms": float(budget), "search_s": search_s, "precision": best.option.precision, "r": best.config.r,
                     "predicted_ms": best.latency_ms, "latency_source": selection.sources[best.option], "measured_ms": measured,
                     "held": bool(measured <= budget), "predicted_accuracy": float(best.accuracy),
                     "brute_force_accuracy": brute, "gap_points": None if brute is None else 100 * (brute - best.accuracy),
                     "measured_accuracy": accuracy})
    print_table("selection on this host, 1 thread (latency: measured fp32 and int8 block tables; accuracy: predictor)",
                ["budget ms", "search s", "choice", "predicted ms", "measured ms", "held", "pred acc %", "brute acc %",
                 "gap pts", "measured acc %"],
                [[f"{r['budget_ms']:.3f}", f"{r['search_s']:.2f}", f"{r['precision']} r{r['r']}", f"{r['predicted_ms']:.3f}",
                  f"{r['measured_ms']:.3f}", "yes" if r["held"] else "NO", f"{100 * r['predicted_accuracy']:.2f}",
                  "-" if r["brute_force_accuracy"] is None else f"{100 * r['brute_force_accuracy']:.2f}",
                  "-" if r["gap_points"] is None else f"{r['gap_points']:+.2f}", f"{100 * r['measured_accuracy']:.2f}"]
                 for r in rows])
    held = float(np.mean([r["held"] for r in rows]) * 100)
    search = [r["search_s"] for r in rows]
    gaps = [r["gap_points"] for r in rows if r["gap_points"] is not None]  # positive: brute force found better
    print(f"budget held in {held:.0f}% of cases (search margin {100 * selection.margin:g}%); search median {np.median(search):.2f} s, max {max(search):.2f} s "
          f"(anchor: once-for-all's tutorial 22 s); accuracy gap to brute force: median {np.median(gaps):+.2f}, "
          f"worst {max(gaps):+.2f} points (goal <= 0.2)")
    out = write_result("selection", {"threads": 1, "space": space.name, "budgets": rows, "held_pct": held,
                                     "search_s_median": float(np.median(search)), "gap_points_worst": float(max(gaps)),
                                     "block_tables": {p: {"blocks": len(t.entries), "scale": t.scale, "intercept_ms": t.intercept_ms}
                                                      for p, t in tables.items()},
                                     "seconds": time.time() - started})
    print(f"wrote {out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
