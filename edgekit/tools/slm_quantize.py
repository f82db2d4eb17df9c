"""Quantize an SLM's decoder (int8 dynamic, fp16) and print how far each variant drifts from fp32.

    python -m edgekit.tools.slm_quantize --model slm-encdec --examples 300

exports the model (fp32) through the export pipeline, writes ``<out>/int8`` and ``<out>/fp16`` bundles
whose decoder graph is quantized (:func:`edgekit.models.slm.quantize.decoder_variant`), then prints, on
held-out examples of the training task, greedy token agreement with fp32, exact match and the
teacher-forced loss change (:func:`edgekit.models.slm.quantize.compare`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

__all__ = ["fp32_request", "main"]


def fp32_request(model: str, out: Path):
    """The fp32 export the variants are made from and compared with (not timed)."""
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig

    return ExportRequest(out=out, model=ModelRequest(model), measure=MeasureConfig(runs=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="slm-encdec", help="slm-encdec, slm-deconly or slm:FILE.pt")
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="where to keep the bundles (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from edgekit.models.slm.data import HELDOUT_SEED, make_examples
    from edgekit.models.slm.quantize import VARIANTS, compare, decoder_variant
    from edgekit.pipeline import export_bundle

    out = args.out or Path(tempfile.mkdtemp(prefix="edgekit-quant-"))
    export_bundle(fp32_request(args.model, out / "fp32"))
    bundles = {"fp32": out / "fp32"}
    for precision in VARIANTS:
        bundles[precision] = decoder_variant(out / "fp32", out / precision, precision)
    pairs = list(make_examples(args.examples, HELDOUT_SEED))
    results = compare(bundles, pairs)
    if args.json:
        print(json.dumps({"model": args.model, "examples": len(pairs), "results": results}, indent=2))
        return 0
    print(f"{args.model}: decoder variants vs fp32 on {len(pairs)} held-out examples (greedy, 1 thread)")
    print(f"{'variant':8} {'decoder MB':>10} {'exact match':>12} {'token agree':>12} {'seq identical':>14} {'loss':>8} {'loss change':>12} {'gen s':>7}")
    for name, row in results.items():
        print(f"{name:8} {row['decoder_bytes'] / 2**20:10.2f} {row['exact_match']:12.3f} {row.get('token_agreement', 1.0):12.4f} "
              f"{row.get('sequences_identical', 1.0):14.3f} {row['loss']:8.4f} {row.get('loss_change', 0.0):+12.4f} {row['generate_s']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
