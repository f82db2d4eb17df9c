"""Soak: 10,000 runs of one Session; resident memory (RSS) at the start (after warm-up) and the end.

A leak of a few hundred bytes per run in edgekit's wrapper (feeds checked, outputs wrapped) would show
as megabytes here; the pass mark is growth under 5 MB. The model is a small MatMul + Relu bundle, so
the run is dominated by edgekit's per-call work, not by onnxruntime's arithmetic.

    python benchmarks/soak.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_result  # noqa: E402

LIMIT_MB = 5.0


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; else the peak from resource)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    import crash

    import edgekit.runtimes as rt

    with tempfile.TemporaryDirectory(prefix="edgekit-soak-") as tmp:
        out = Path(tmp) / "bundle"
        crash.write(out, "v1", crash.tiny_onnx())
        session = rt.load(out, threads=1)
        x = np.array([[-1, 2, -3, 4]], np.float32)
        for _ in range(args.warmup):
            session.run({"x": x})
        gc.collect()
        start_mb, samples = rss_mb(), []
        began = time.perf_counter()
        for i in range(args.runs):
            y = session.run({"x": x})["y"]
            if i % (args.runs // 10 or 1) == 0:
                samples.append(round(rss_mb(), 2))
        seconds = time.perf_counter() - began
        gc.collect()
        end_mb = rss_mb()
        assert y.tolist() == [[0, 2, 0, 4]]
    growth = end_mb - start_mb
    ok = growth < LIMIT_MB
    print_table(f"soak: {args.runs} runs of one Session, 1 thread (shared noisy machine; RSS is what counts)",
                ["runs", "RSS start MiB", "RSS end MiB", "growth MiB", "limit MiB", "us/run", "ok"],
                [[args.runs, f"{start_mb:.2f}", f"{end_mb:.2f}", f"{growth:+.2f}", LIMIT_MB, f"{1e6 * seconds / args.runs:.1f}", ok]])
    write_result("soak", {"runs": args.runs, "warmup": args.warmup, "rss_start_mb": start_mb, "rss_end_mb": end_mb,
                          "growth_mb": growth, "limit_mb": LIMIT_MB, "samples_mb": samples,
                          "us_per_run": 1e6 * seconds / args.runs, "ok": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
