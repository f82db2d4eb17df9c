"""Concurrency: one Session shared by threads gives bit-identical answers; writers to one --out are
serialised by the lock; exports to different --out in one folder do not block each other."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import edgekit.runtimes as rt
from edgekit.runtimes.bundle_writer import BundleWriter
from edgekit.runtimes.errors import BundleError

from .helpers import load_benchmark

pytest.importorskip("onnx")
crash = load_benchmark("crash")


@pytest.fixture
def model(tmp_path) -> bytes:
    return crash.tiny_onnx()


def test_eight_threads_share_one_session_bit_identically(tiny_bundle):
    session = rt.load(tiny_bundle, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    name = session.inputs[0].name
    reference = {k: v.copy() for k, v in session.run({name: x}).items()}

    def work(_: int) -> bool:
        return all(all(np.array_equal(reference[k], v) for k, v in session.run({name: x}).items()) for _ in range(50))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(8)))


def test_two_outs_in_one_folder_do_not_block_each_other(tmp_path, model):
    with BundleWriter(tmp_path / "a") as first:
        with BundleWriter(tmp_path / "b") as second:
            assert first.path != second.path
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_threads_racing_for_one_out_one_wins_the_others_are_refused(tmp_path, model):
    out = tmp_path / "b"
    barrier = threading.Barrier(4)
    results: list[str] = []

    def attempt(version: str) -> None:
        barrier.wait()
        try:
            crash.write(out, version, model)
            results.append("ok")
        except BundleError as exc:
            assert "another edgekit process is writing this bundle" in str(exc)
            results.append("refused")

    threads = [threading.Thread(target=attempt, args=(f"v{1 + i % 2}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "ok" in results and len(results) == 4
    assert crash.check(out) in ("v1", "v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, model):
    (tmp_path / ".b.lock").write_text("")  # flock died with its process; the file alone locks nothing
    crash.write(tmp_path / "b", "v1", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
