"""How well edgekit predicts latency on this host: roofline vs block table vs calibrated per-op model.

On the host target at 1 thread (onnxruntime):
1. time every distinct block of the OFA MobileNetV3 w1.0 space at the chosen resolutions (block table);
2. time the calibration zoo and FIT_N fitting subnets (seed 1); fit the block table's scale/intercept on
   the fitting subnets and the calibrated per-op model on zoo + fitting subnets;
3. time TEST_N held-out subnets (seed 2) twice, in two separate passes with fresh sessions: pass A is
   "measured", pass B against pass A is the noise ceiling;
4. predict each held-out subnet with (a) the roofline alone, (b) the block table, (c) the calibrated model;
5. predict models outside the space (the test suite's CNN, MobileNetV3-Small, a segmentation-style
   encoder-decoder, transformer blocks) with (a) and (c);
6. rank fp32 vs int8 QDQ on a few subnets as measured, next to what the roofline assumed.

    python benchmarks/latency_predictor.py [--fit 20] [--test 100] [--resolutions 160,192,224]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # for tests.fixtures; appended so an installed edgekit wins


def score(pred, meas) -> dict:
    from edgekit.search.accuracy import kendall_tau

    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    err = (pred - meas) / meas
    return {
        "n": len(meas),
        "within_5pct": float(np.mean(np.abs(err) <= 0.05) * 100),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10) * 100),
        "rmse_ms": float(np.sqrt(np.mean((pred - meas) ** 2))),
        "median_abs_err_pct": float(np.median(np.abs(err)) * 100),
        "kendall_tau": kendall_tau(pred, meas),
    }


class _SegEncoderDecoder(nn.Module):
    """A small segmentation-style net: strided ResNet-like encoder, multi-scale upsampling head."""

    def __init__(self, width: int, classes: int = 19) -> None:
        super().__init__()

        def stage(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.s1, self.s2, self.s3 = stage(3, width, 2), stage(width, width * 2, 2), stage(width * 2, width * 4, 2)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (width, width * 2, width * 4))
        self.head = nn.Conv2d(width * 3, classes, 1)

    def forward(self, x):
        f1 = self.s1(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        size = f1.shape[-2:]
        up = [nn.functional.interpolate(l(f), size=size, mode="bilinear", align_corners=False)
              for l, f in zip(self.lateral, (f1, f2, f3))]
        return self.head(torch.cat(up, 1))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.block = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, x):
        return self.block(x)


def outside_models():
    from edgekit.models.mobilenet import mobilenet_v3_small
    from tests.fixtures.tiny_models import tiny_cnn

    torch.manual_seed(0)
    return [
        ("tests: tiny-cnn r16", tiny_cnn(), (1, 3, 16, 16)),
        ("tests: tiny-cnn r64", tiny_cnn(), (1, 3, 64, 64)),
        ("mobilenet-v3-small r224", mobilenet_v3_small(10), (1, 3, 224, 224)),
        ("mobilenet-v3-small r160", mobilenet_v3_small(10), (1, 3, 160, 160)),
        ("mobilenet-v3-small r320", mobilenet_v3_small(10), (1, 3, 320, 320)),
        ("seg enc-dec w16 r128", _SegEncoderDecoder(16), (1, 3, 128, 128)),
        ("seg enc-dec w24 r160", _SegEncoderDecoder(24), (1, 3, 160, 160)),
        ("seg enc-dec w32 r96", _SegEncoderDecoder(32), (1, 3, 96, 96)),
        ("transformer d128 h4 t64", _TransformerBlock(128, 4), (1, 64, 128)),
        ("transformer d256 h4 t64", _TransformerBlock(256, 4), (1, 64, 256)),
        ("transformer d256 h8 t128", _TransformerBlock(256, 8), (1, 128, 256)),
        ("transformer d384 h6 t32", _TransformerBlock(384, 6), (1, 32, 384)),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa-mbv3-w1.0")
    parser.add_argument("--resolutions", default="160,192,224")
    parser.add_argument("--fit", type=int, default=20)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--int8", type=int, default=5, help="subnets to compare fp32 vs int8 QDQ")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from edgekit.calibration_zoo import calibration_zoo
    from edgekit.exporters.graph_stats import graph_stats
    from edgekit.exporters.onnx import export_onnx
    from edgekit.models.ofa import OFASupernet, get_space, materialize
    from edgekit.models.ofa.blocks import subnet_blocks
    from edgekit.profiling import build_block_table, fit_configs, sample_configs, time_module
    from edgekit.runtimes.ort import OrtSession
    from edgekit.runtimes.spec import TensorSpec
    from edgekit.targets import load_target
    from edgekit.targets.calibrated import fit_calibration
    from edgekit.targets.latency import predict_ms
    from edgekit.targets.measure import measure_latency

    host = load_target("host")
    space = get_space(args.space)
    resolutions = [int(r) for r in args.resolutions.split(",")]
    started = time.time()

    def log(message):
        print(f"[{time.time() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    log("timing blocks")
    table = build_block_table(space, resolutions, runs=args.runs)
    log(f"{len(table.entries)} blocks timed; timing the calibration zoo")
    zoo = [(m.name, time_module(m.module, m.input_shape, runs=args.runs)) for m in calibration_zoo()]

    torch.manual_seed(0)
    supernet = OFASupernet(space).eval()
    fit_set = fit_configs(space, args.fit, 1, resolutions)
    test_configs = sample_configs(space, args.test, 2, resolutions)
    with tempfile.TemporaryDirectory() as tmp:
        def export(config, index, tag):
            path = Path(tmp) / f"{tag}{index}.onnx"
            spec = (TensorSpec("input", (1, 3, config.r, config.r)),)
            export_onnx(materialize(supernet, config), spec, (torch.randn(1, 3, config.r, config.r),), path)
            return path, spec, graph_stats(path).nodes

        def timed(path, spec):
            session = OrtSession(path, threads=1, inputs=spec)
            feeds = {"input": np.random.default_rng(0).standard_normal(spec[0].shape).astype(np.float32)}
            return measure_latency(session, feeds, warmup=10, runs=args.runs).p50_ms

        log("exporting subnets")
        fit = [export(c, i, "fit") for i, c in enumerate(fit_set)]
        test = [export(c, i, "test") for i, c in enumerate(test_configs)]
        log("timing fitting subnets")
        fit_ms = [timed(p, s) for p, s, _ in fit]
        log("timing held-out subnets, pass A")
        test_a = [timed(p, s) for p, s, _ in test]
        log("timing held-out subnets, pass B (noise ceiling)")
        test_b = [timed(p, s) for p, s, _ in test]

        int8_rows = []
        if args.int8:
            log("fp32 vs int8 QDQ")
            from edgekit.exporters.quantize import Int8Candidate, quantize_int8

            rng = np.random.default_rng(3)
            for (path, spec, nodes), config in list(zip(test, test_configs))[: args.int8]:
                calib = [{"input": rng.standard_normal(spec[0].shape).astype(np.float32)} for _ in range(8)]
                q = quantize_int8(path, Path(tmp) / "q.onnx", calib, spec, candidates=(Int8Candidate("uint8", True),), bench_runs=5)
                fp32_ms, int8_ms = timed(path, spec), timed(q.path, spec)
                roof32 = predict_ms(nodes, host, "cpu", "fp32", threads=1).ms
                roof8 = predict_ms(nodes, host, "cpu", "int8", threads=1).ms
                int8_rows.append({"r": config.r, "fp32_ms": fp32_ms, "int8_ms": int8_ms, "measured_int8_over_fp32": int8_ms / fp32_ms,
                                  "roofline_int8_over_fp32": roof8 / roof32})

    table = table.fit([[b.key for b in subnet_blocks(c, space)] for c in fit_set], fit_ms)
    calibration = fit_calibration([t.ops for _, t in zoo] + [n for _, _, n in fit], [t.stats.p50_ms for _, t in zoo] + fit_ms,
                                  host, "cpu", "fp32", threads=1)
    predictions = {
        "(a) roofline (modeled)": [predict_ms(n, host, "cpu", "fp32", threads=1).ms for _, _, n in test],
        "(b) block table": [table.predict([b.key for b in subnet_blocks(c, space)]).ms for c in test_configs],
        "(c) calibrated per-op": [calibration.predict(n).ms for _, _, n in test],
        "noise ceiling (pass B vs A)": test_b,
    }
    in_space = {name: score(pred, test_a) for name, pred in predictions.items()}
    rows = [[name, s["n"], f"{s['within_5pct']:.0f}%", f"{s['within_10pct']:.0f}%", f"{s['rmse_ms']:.3f}",
             f"{s['median_abs_err_pct']:.1f}%", f"{s['kendall_tau']:.3f}"] for name, s in in_space.items()]
    print_table(f"held-out OFA subnets ({args.space}, r in {resolutions}), host, 1 thread; measured median "
                f"{np.median(test_a):.2f} ms", ["predictor", "n", "+-5%", "+-10%", "RMSE ms", "median |err|", "Kendall tau"], rows)
    print(f"block table: {len(table.entries)} blocks, fit scale {table.scale:.3f} x sum + {table.intercept_ms:.3f} ms "
          f"on {len(fit_set)} subnets")

    log("timing models outside the space")
    outside = []
    for name, module, shape in outside_models():
        t = time_module(module, shape, runs=args.runs)
        outside.append({"model": name, "measured_ms": t.stats.p50_ms,
                        "roofline_ms": predict_ms(t.ops, host, "cpu", "fp32", threads=1).ms,
                        "calibrated_ms": calibration.predict(t.ops).ms})
    measured = [o["measured_ms"] for o in outside]
    out_scores = {"(a) roofline (modeled)": score([o["roofline_ms"] for o in outside], measured),
                  "(c) calibrated per-op": score([o["calibrated_ms"] for o in outside], measured)}
    print()
    print_table("models outside the space", ["model", "measured ms", "roofline ms", "calibrated ms", "calibrated err"],
                [[o["model"], f"{o['measured_ms']:.3f}", f"{o['roofline_ms']:.3f}", f"{o['calibrated_ms']:.3f}",
                  f"{100 * (o['calibrated_ms'] / o['measured_ms'] - 1):+.1f}%"] for o in outside])
    print_table("", ["predictor", "n", "+-10%", "median |err|", "Kendall tau"],
                [[k, s["n"], f"{s['within_10pct']:.0f}%", f"{s['median_abs_err_pct']:.1f}%", f"{s['kendall_tau']:.3f}"]
                 for k, s in out_scores.items()])
    if int8_rows:
        print()
        print_table("fp32 vs int8 QDQ on this host (measured), and what the roofline assumed",
                    ["r", "fp32 ms", "int8 ms", "measured int8/fp32", "roofline int8/fp32"],
                    [[r["r"], f"{r['fp32_ms']:.3f}", f"{r['int8_ms']:.3f}", f"{r['measured_int8_over_fp32']:.2f}",
                      f"{r['roofline_int8_over_fp32']:.2f}"] for r in int8_rows])
    path = write_result("latency_predictor", {
        "space": args.space, "resolutions": resolutions, "threads": 1, "runs": args.runs,
        "fit_subnets": args.fit, "test_subnets": args.test, "in_space": in_space, "outside_space": out_scores,
        "outside_models": outside, "block_table": {"blocks": len(table.entries), "scale": table.scale, "intercept_ms": table.intercept_ms},
        "calibration": calibration.to_json(), "int8_vs_fp32": int8_rows,
        "measured_ms": {"pass_a": test_a, "pass_b": test_b}, "seconds": time.time() - started,
    })
    print(f"wrote {path} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
