"""Cold start of a device app: a fresh process that imports edgekit.runtimes, loads a bundle and runs
one inference, against a bare onnxruntime script on the same model file.

Each round starts both processes one after the other (order alternating), timing each from spawn to
exit; peak memory is the child's own maximum resident set (os.wait4). Medians of the per-round
ratios are reported, so drift on the shared machine hits both alike.

    python benchmarks/cold_start.py                      # exports the default model to a temp bundle
    python benchmarks/cold_start.py --bundle out/jetson --rounds 31
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_result  # noqa: E402

EDGEKIT_APP = """
import sys
import numpy as np
import edgekit.runtimes as rt
session = rt.load(sys.argv[1], threads=1)
spec = session.inputs[0]
session.run(np.zeros(spec.concrete({}, default=1), spec.dtype))
"""

BARE_APP = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
first = session.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in first.shape]
session.run(None, {first.name: np.zeros(shape, np.float32)})
"""


# Children may cache bytecode, as every installed package has it (pip compiles wheels at install; an
# editable checkout under PYTHONDONTWRITEBYTECODE=1 would otherwise compile edgekit's sources each time,
# ~6 ms, while numpy's and onnxruntime's come precompiled).
_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def _run(code: str, arg: str) -> tuple[float, float]:
    """Wall ms and peak RSS MiB of one fresh ``python -c code arg`` process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.DEVNULL, env=_ENV)
    _, status, usage = os.wait4(process.pid, 0)
    wall = (time.perf_counter() - start) * 1000.0
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"cold-start process failed with exit {process.returncode}: {code.strip().splitlines()[2]}")
    return wall, usage.ru_maxrss / 1024.0


def _default_bundle(work: Path) -> Path:
    """Export in a child process: a child's peak RSS counts its parent's pages from before exec, so this
    process must never hold torch."""
    out = work / "bundle"
    subprocess.run([sys.executable, "-m", "edgekit", "export", "--out", str(out), "--bench-runs", "0", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: export the default model)")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgekit-cold-") as work:
        bundle = args.bundle or _default_bundle(Path(work))
        from edgekit.runtimes import read_bundle

        model_file = str(read_bundle(bundle).file())
        contenders = {"edgekit.runtimes": (EDGEKIT_APP, str(bundle)), "bare onnxruntime": (BARE_APP, model_file)}
        for _ in range(args.warmup):
            for code, arg in contenders.values():
                _run(code, arg)
        wall = {name: [] for name in contenders}
        rss = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                ms, mib = _run(*contenders[name])
                wall[name].append(ms)
                rss[name].append(mib)
    ratios = [a / b for a, b in zip(wall[names[0]], wall[names[1]])]
    rows = [[name, f"{statistics.median(wall[name]):.1f}", f"{min(wall[name]):.1f}", f"{max(wall[name]):.1f}",
             f"{statistics.median(rss[name]):.1f}"] for name in names]
    print_table(f"cold start: import + load + first inference, {args.rounds} interleaved rounds (measured on this host)",
                ["app", "wall ms p50", "min", "max", "peak RSS MiB p50"], rows)
    ratio = statistics.median(ratios)
    extra_mib = statistics.median(rss[names[0]]) - statistics.median(rss[names[1]])
    print(f"edgekit / bare: {ratio:.3f}x wall (median of per-round ratios, range {min(ratios):.2f}-{max(ratios):.2f}), "
          f"{extra_mib:+.1f} MiB peak memory")
    path = write_result("cold_start", {
        "bundle": str(bundle) if args.bundle else "default model (exported to a temp dir)",
        "rounds": args.rounds, "threads": 1,
        "wall_ms": {n: {"p50": statistics.median(wall[n]), "min": min(wall[n]), "max": max(wall[n])} for n in names},
        "peak_rss_mib": {n: statistics.median(rss[n]) for n in names},
        "ratio_wall_p50": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios), "extra_peak_mib": extra_mib,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
