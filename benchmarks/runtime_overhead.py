"""edgekit's Session.run against a raw onnxruntime InferenceSession.run on the same model.

One process, one thread each, interleaved calls, medians over >= 300 rounds. edgekit's Session wraps
the very InferenceSession it is compared with, so the difference is edgekit's own per-call work; a
second raw session on the same file is timed too, as a control for session-to-session noise. The model is the
built-in MobileNetV3-Small at a resolution chosen so one call takes about 3 ms here.

    python benchmarks/runtime_overhead.py [--rounds 400] [--resolution 416]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_times, print_table, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=416, help="input side; 416 gives about 3 ms here")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    import edgekit.runtimes as rt
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        shape = (1, 3, args.resolution, args.resolution)
        export_bundle(ExportRequest(out=bundle, model=ModelRequest("mobilenet-v3-small", shape), measure=MeasureConfig(runs=0)))
        session = rt.load(bundle, threads=1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        raw = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        assert np.array_equal(session.run({"input": x})["output"], raw.run(["output"], {"input": x})[0])
        # Three contenders: a raw session of its own, the same raw session under edgekit's Session.run,
        # and a second raw session (an A/A control: how much two identical sessions differ here).
        shared = session.raw
        control = ort.InferenceSession(str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
        times = interleaved_times(
            {
                "onnxruntime InferenceSession.run": lambda: shared.run(["output"], {"input": x}),
                "edgekit Session.run": lambda: session.run({"input": x}),
                "second raw session (A/A control)": lambda: control.run(["output"], {"input": x}),
                "own raw session": lambda: raw.run(["output"], {"input": x}),
            },
            rounds=args.rounds,
            warmup=args.warmup,
        )
    raw_ms = float(np.median(times["onnxruntime InferenceSession.run"]))
    ours_ms = float(np.median(times["edgekit Session.run"]))
    # Paired per-round ratio: both calls of a round share the machine's state at that moment.
    paired = times["edgekit Session.run"] / times["onnxruntime InferenceSession.run"]
    ratio = float(np.median(paired))
    rows = [[name, f"{np.median(t):.4f}", f"{np.median(t) / raw_ms:.4f}"] for name, t in times.items()]
    control_ratio = float(np.median(times["second raw session (A/A control)"] / times["own raw session"]))
    print_table(f"runtime overhead, batch 1, 1 thread, {args.rounds} interleaved rounds, input {shape}",
                ["contender", "median ms", "ratio"], rows)
    print(f"overhead: {100 * (ours_ms / raw_ms - 1):+.2f}% of medians; median paired ratio {ratio:.4f} "
          f"({100 * (ratio - 1):+.2f}%); goal <= +3%")
    print(f"A/A control: two identical raw sessions differ by {100 * (control_ratio - 1):+.2f}% (paired median)")
    path = write_result("runtime_overhead", {
        "model": "mobilenet-v3-small", "input_shape": list(shape), "threads": 1, "rounds": args.rounds,
        "median_ms": {"onnxruntime": raw_ms, "edgekit": ours_ms},
        "overhead_pct_of_medians": 100 * (ours_ms / raw_ms - 1),
        "median_paired_ratio": ratio, "goal_pct": 3.0,
        "aa_control_paired_ratio": control_ratio,
        "all_medians_ms": {name: float(np.median(t)) for name, t in times.items()},
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
