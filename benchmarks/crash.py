"""kill -9 an export while it replaces a bundle: afterwards ``--out`` holds a complete, loadable bundle
(the old one or the new one), and the next export cleans every leftover beside it.

Each trial writes bundle "v1", then starts a child that replaces it with "v2" and kills it with
SIGKILL: at a random instant (``--trials`` of them), or at each step of the swap (runtimes/swap.py
calls a hook after each), with the atomic exchange and with the fallback (move aside, move in).
After each kill it loads the bundle at ``--out`` and runs it, checks it is v1 or v2 and whole, then runs
one more export and checks that nothing but ``--out`` is left in its folder. The fallback has one
window without a bundle at ``--out`` (killed between its two renames): the old bundle then waits at
``.NAME.old-PID`` and the next writer (or ``recover``) puts it back first; the table says "put back".

    python benchmarks/crash.py [--trials 50]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS = [  # (mode, step): a kill right after that step
    ("exchange", "staged"), ("exchange", "exchanged"), ("exchange", "removed"),
    ("fallback", "staged"), ("fallback", "moved-aside"), ("fallback", "moved-in"), ("fallback", "removed"),
    ("first", "moved-in"),
]
PAYLOAD_BYTES = 16 << 20  # a model-sized file, so a random kill often lands inside the write


def tiny_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def write(out: Path, version: str, model: bytes) -> None:
    """Write the bundle ``version`` to ``out`` (in this process)."""
    from edgekit.runtimes.bundle import Graph, Manifest
    from edgekit.runtimes.bundle_writer import BundleWriter
    from edgekit.runtimes.spec import TensorSpec

    with BundleWriter(out) as stage:
        (stage.path / "model.onnx").write_bytes(model)
        (stage.path / "version.txt").write_text(version)
        (stage.path / "weights.bin").write_bytes(version.encode() * (PAYLOAD_BYTES // len(version)))
        graph = Graph("model.onnx", (TensorSpec("x", (1, 4)),), (TensorSpec("y", (1, 4)),))
        stage.commit(Manifest(target="host", format="onnx", precision="fp32", graphs={"model": graph}))


def child(out: Path, version: str, model_path: Path, mode: str, step: str) -> None:
    """Write ``version``, killing this process with SIGKILL right after ``step`` ("" : never)."""
    from edgekit.runtimes import swap

    if mode == "fallback":
        swap._exchange = lambda a, b: False
    if step:
        original = swap.swap_in

        def kill_after(name: str) -> None:
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)

        def staged_then_swap(staged: Path, dest: Path) -> None:
            kill_after("staged")
            original(staged, dest)

        swap._after_step = kill_after
        import edgekit.runtimes.bundle_writer as bundle

        bundle.swap_in = staged_then_swap
    write(out, version, model_path.read_bytes())


def spawn(out: Path, version: str, model_path: Path, mode: str = "exchange", step: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", str(out), version, str(model_path), mode, step],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def check(out: Path) -> str:
    """The version of the complete bundle at ``out`` (loads it with onnxruntime and runs it)."""
    import numpy as np

    import edgekit.runtimes as rt

    session = rt.load(out)  # verifies every sha256 and refuses unlisted files
    y = session.run({"x": np.array([[-1, 2, -3, 4]], np.float32)})["y"]
    assert y.tolist() == [[0, 2, 0, 4]], y
    version = (out / "version.txt").read_text()
    assert version in ("v1", "v2", "v3"), version
    return version


def trial(root: Path, model_path: Path, mode: str, step: str, delay: float | None) -> dict:
    """One kill; returns what was found at --out and what was left beside it before and after the next run."""
    out = root / "bundle"
    if mode != "first":
        write(out, "v1", model_path.read_bytes())
    proc = spawn(out, "v2", model_path, mode, step)
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in root.iterdir() if p.name != "bundle")
    if out.exists() or mode != "fallback":
        found = check(out) if (mode != "first" or out.exists()) else "none"
    else:  # the fallback's one window (no renameat2): the next run puts the old bundle back first
        from edgekit.runtimes.swap import OutLock, recover

        with OutLock.acquire(out, str(out)):
            recover(out)
        found = check(out) + " (put back)"
    rerun = spawn(out, "v3", model_path)
    _, err = rerun.communicate()
    assert rerun.returncode == 0, err.decode()
    after = sorted(p.name for p in root.iterdir() if p.name != "bundle")
    return {"mode": mode, "step": step or f"random {delay:.3f}s", "killed": killed, "found": found,
            "left": left, "left_after_next_run": after, "ok": (found != "none" or mode == "first") and not after}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(Path(argv[1]), argv[2], Path(argv[3]), argv[4], argv[5] if len(argv) > 5 else "")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="random-instant kills")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from common import print_table, write_result

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="edgekit-crash-") as tmp:
        model_path = Path(tmp) / "model.onnx"
        model_path.write_bytes(tiny_onnx())
        start = time.perf_counter()  # how long one uninterrupted child takes: the random window
        proc = spawn(Path(tmp) / "probe", "v2", model_path)
        proc.wait()
        span = time.perf_counter() - start
        results = []
        for i, (mode, step) in enumerate(STEPS):
            results.append(trial(Path(tempfile.mkdtemp(dir=tmp)), model_path, mode, step, None))
        for i in range(args.trials):
            results.append(trial(Path(tempfile.mkdtemp(dir=tmp)), model_path, "exchange", "", rng.uniform(0.3 * span, 1.1 * span)))
    rows = [[r["mode"], r["step"], r["killed"], r["found"], " ".join(r["left"]) or "-", " ".join(r["left_after_next_run"]) or "-", r["ok"]]
            for r in results]
    print_table("kill -9 during a bundle swap (shared noisy machine; timings only set the random window)",
                ["mode", "kill after", "killed", "--out holds", "left beside it", "left after next run", "ok"], rows)
    failed = [r for r in results if not r["ok"]]
    killed = sum(r["killed"] for r in results)
    print(f"{len(results)} trials, {killed} killed by SIGKILL, {len(failed)} failed; child run {span:.2f} s")
    write_result("crash", {"trials": len(results), "killed": killed, "failed": len(failed), "child_seconds": span,
                           "results": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
