"""Build the accuracy predictor a supernet ships with: measure, fit, save.

1. Sample ``--n`` subnets (seeded) and measure each one's held-out top-1 accuracy with the supernet's
   weights, BatchNorm recalibrated per subnet on calibration images (GPU if present, else CPU).
2. Measure the accuracy change of fp16 and int8 on ``--precision-subnets`` subnets through the real
   export pipeline (ONNX, onnxruntime quantization, onnxruntime evaluation on held-out images).
3. Fit :class:`AccuracyPredictor` on the measurements (a held-out split scores it) and save it at
   ``--out``, with the measurements (JSON) so the fit is reproducible without re-measuring.

    python -m edgekit.tools.accuracy_data --space ofa-mbv3-shapes --n 800 --out my_predictor   # a user build
    python -m edgekit.tools.accuracy_data --space ofa-mbv3-shapes --n 800 --into-package \
        --out edgekit/models/weights/ofa_mbv3_shapes_accuracy                                 # the shipped one

Without ``--out`` it writes to the user data directory (``$EDGEKIT_DATA_DIR`` or platformdirs), where
``select`` finds it for a space that ships no predictor; ``--out`` inside the package is refused unless
``--into-package``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

__all__ = ["measure_accuracies", "precision_request", "measure_precision_drops", "main"]


def measure_accuracies(space_name: str, checkpoint: str, n: int, seed: int, eval_images: int, calib_images: int,
                       device: str = "auto") -> list[dict]:
    """Held-out accuracy of ``n`` random subnets (plus the largest and smallest)."""
    import torch

    from edgekit.models.ofa import build_supernet, largest, make_shapes, sample, smallest
    from edgekit.models.ofa.data import CALIBRATION_SEED, HELDOUT_SEED
    from edgekit.models.ofa.train import evaluate_subnet

    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device("cuda" if use_cuda else "cpu")
    supernet = build_supernet(space_name, checkpoint).to(dev).eval()
    space = supernet.space
    images, labels = make_shapes(eval_images, seed=HELDOUT_SEED, size=64)
    calib, _ = make_shapes(calib_images, seed=CALIBRATION_SEED, size=64)
    images, labels, calib = images.to(dev), labels.to(dev), calib.to(dev)
    rng = random.Random(seed)
    configs = [largest(space), smallest(space)] + [sample(space, rng) for _ in range(n)]
    rows = []
    started = time.time()
    for i, config in enumerate(configs):
        accuracy = evaluate_subnet(supernet, config, images, labels, calib)
        rows.append({"config": config.to_dict(), "accuracy": accuracy})
        if i % 50 == 0:
            print(f"[{time.time() - started:5.0f}s] {i + 1}/{len(configs)} accuracy {accuracy:.4f}", file=sys.stderr, flush=True)
    return rows


def precision_request(space_name: str, checkpoint: str, config, precision: str, out: Path):
    """The export of one subnet at ``precision`` whose accuracy change the predictor learns: no timing,
    and no accuracy limit (the drop is what is measured)."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, ValidationConfig

    model = ModelRequest("ofa-mbv3", space=space_name, checkpoint=None if checkpoint == "default" else Path(checkpoint),
                         subnet=config.to_json())
    return ExportRequest(out=out, model=model, output=OutputConfig(precision=precision), measure=MeasureConfig(runs=0),
                         validation=ValidationConfig(max_accuracy_drop=1.0))


def measure_precision_drops(space_name: str, checkpoint: str, configs: list, work: Path) -> dict:
    """Mean accuracy drop of fp16 and int8 bundles against fp32, measured by the export pipeline."""
    from edgekit.pipeline import export_bundle

    drops: dict[str, list[float]] = {"fp16": [], "int8": []}
    for i, config in enumerate(configs):
        for precision in drops:
            request = precision_request(space_name, checkpoint, config, precision, work / f"{precision}{i}")
            manifest = export_bundle(request).manifest
            vs = manifest.validation["precision"]["vs_fp32"]
            drops[precision].append(vs["accuracy_drop"])
            print(f"subnet {i} {precision}: fp32 {vs['accuracy_fp32']:.4f} -> {vs['accuracy']:.4f}", file=sys.stderr, flush=True)
    return {"fp32": 0.0, **{p: float(sum(v) / len(v)) for p, v in drops.items()}, "measured_on": len(configs),
            "per_subnet": drops}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ofa-mbv3-shapes")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--calib-images", type=int, default=512, help="images for BatchNorm recalibration")
    parser.add_argument("--precision-subnets", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1500)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--measurements", type=Path, help="reuse a measurements JSON instead of measuring")
    parser.add_argument("--skip-precision", action="store_true", help="only measure subnets (e.g. on a GPU machine)")
    parser.add_argument("--out", type=Path, help="path stem: writes .pt, .json and -measurements.json (default: "
                        "the user data directory's predictors/, where select finds it; never inside the package)")
    parser.add_argument("--into-package", action="store_true",
                        help="maintainers: allow --out inside edgekit/ (rebuilding the shipped predictor)")
    args = parser.parse_args(argv)

    from edgekit.models.ofa.predictor import check_user_out, user_predictor_path
    from edgekit.runtimes.errors import UsageError

    args.out = args.out or user_predictor_path(args.space)
    if not args.into_package:
        try:
            check_user_out(args.out)
        except UsageError as exc:
            parser.error(str(exc))

    import tempfile

    from edgekit.models.ofa import SubnetConfig, get_space
    from edgekit.runtimes.files import atomic_write_text
    from edgekit.runtimes.precision import PRECISIONS
    from edgekit.search.accuracy import AccuracyPredictor

    space = get_space(args.space)
    measurements_path = Path(f"{args.out}-measurements.json")
    if args.measurements:
        data = json.loads(args.measurements.read_text())
    else:
        rows = measure_accuracies(args.space, args.checkpoint, args.n, args.seed, args.eval_images, args.calib_images)
        data = {"space": args.space, "seed": args.seed, "eval_images": args.eval_images, "calib_images": args.calib_images,
                "rows": rows}
    if not args.skip_precision and "precision_drop" not in data:
        rng = random.Random(args.seed + 1)
        picks = [SubnetConfig.from_dict(r["config"], space) for r in rng.sample(data["rows"], args.precision_subnets)]
        with tempfile.TemporaryDirectory() as tmp:
            data["precision_drop"] = measure_precision_drops(args.space, args.checkpoint, picks, Path(tmp))
    measurements_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(measurements_path, json.dumps(data) + "\n")
    if args.skip_precision:
        print(f"wrote {measurements_path}")
        return 0
    configs = [SubnetConfig.from_dict(r["config"], space) for r in data["rows"]]
    predictor, report = AccuracyPredictor.fit(space, configs, [r["accuracy"] for r in data["rows"]], seed=args.seed,
                                              epochs=args.epochs, hidden=args.hidden)
    # A measured gain (negative drop) is noise on a few hundred images, not a property of int8: clamp at 0.
    predictor.precision_drop = {k: max(0.0, v) for k, v in data["precision_drop"].items() if k in PRECISIONS}
    predictor.save(args.out)
    print(json.dumps({"report": report.to_json(), "precision_drop": predictor.precision_drop}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
