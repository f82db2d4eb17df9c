"""Subnet extraction time of the OFA MobileNetV3 supernets (edgekit's materialize, optionally once-for-all's).

For each space: build the supernet once, then time ``materialize(supernet, config)`` over N random
subnets (seeded), report median / p90 / max in ms and the space's size; prints a table and writes JSON.
With ``--compare-ofa`` and the ``ofa`` package installed, also times once-for-all's
``set_active_subnet`` + ``get_active_subnet`` on the w1.0 space over the same configs.

Example:
    python benchmarks/ofa_extract.py --n 100 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import types
from pathlib import Path


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _summary(times_s: list[float]) -> dict:
    ms = [t * 1000 for t in times_s]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(_percentile(ms, 0.9), 3),
        "max_ms": round(max(ms), 3),
        "min_ms": round(min(ms), 3),
    }


def _time_edgekit(space_name: str, configs, warmup: int) -> list[float]:
    from edgekit.models.ofa import build_supernet, materialize

    net = build_supernet(space_name).eval()
    for cfg in configs[:warmup]:
        materialize(net, cfg)
    times = []
    for cfg in configs:
        start = time.perf_counter()
        materialize(net, cfg)
        times.append(time.perf_counter() - start)
    return times


def _time_ofa(configs, warmup: int) -> list[float] | None:
    try:
        import ofa  # noqa: F401
    except ImportError:
        return None
    sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    net = OFAMobileNetV3(dropout_rate=0.0, width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                         depth_list=[2, 3, 4]).eval()

    def extract(cfg):
        net.set_active_subnet(ks=list(cfg.ks), e=list(cfg.e), d=list(cfg.d))
        return net.get_active_subnet(preserve_weight=True)

    for cfg in configs[:warmup]:
        extract(cfg)
    times = []
    for cfg in configs:
        start = time.perf_counter()
        extract(cfg)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="random subnets per space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--spaces", default="ofa-mbv3-w1.0,ofa-mbv3-shapes")
    parser.add_argument("--compare-ofa", action="store_true", help="also time once-for-all's get_active_subnet (w1.0)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "ofa_extract.json"))
    args = parser.parse_args(argv)

    import torch

    from edgekit.models.ofa import get_space, sample, space_size

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.spaces.split(","):
        space = get_space(name)
        rng = random.Random(args.seed)
        configs = [sample(space, rng) for _ in range(args.n)]
        rows.append({"space": name, "impl": "edgekit materialize", "n": args.n,
                     "space_size": space_size(space), "space_size_with_resolution": space_size(space, True),
                     **_summary(_time_edgekit(name, configs, args.warmup))})
        if args.compare_ofa and name == "ofa-mbv3-w1.0":
            ofa_times = _time_ofa(configs, args.warmup)
            if ofa_times is None:
                print("ofa package not installed: skipping --compare-ofa", file=sys.stderr)
            else:
                rows.append({"space": name, "impl": "ofa get_active_subnet", "n": args.n,
                             "space_size": space_size(space), "space_size_with_resolution": space_size(space, True),
                             **_summary(ofa_times)})

    header = f"{'space':<16} {'implementation':<22} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'subnets':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['space']:<16} {r['impl']:<22} {r['n']:>4} {r['median_ms']:>10.2f} {r['p90_ms']:>8.2f} "
              f"{r['max_ms']:>8.2f} {r['space_size']:>10.2e}")
    result = {
        "benchmark": "ofa_extract",
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "seed": args.seed,
        "note": "space_size counts distinct architectures (kernel/expand of inactive blocks excluded); "
                "space_size_with_resolution multiplies by the number of input resolutions",
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
