"""Measure torch modules on this host through onnxruntime, for latency tables and calibration.

Each module is exported to ONNX (TorchScript exporter, opset 17), described by its op costs
(exporters.graph_stats) and timed with fixed threads after warm-up (targets.measure). Block tables
and the calibrated per-op model are built from these measurements; both are labelled as derived
from measurement, never as modeled.

Example:
    >>> import torch
    >>> timing = time_module(torch.nn.Conv2d(3, 8, 3), (1, 3, 16, 16), runs=5, warmup=1)
    >>> timing.stats.p50_ms > 0, timing.ops[0].kind
    (True, 'conv')
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from edgekit.exporters.graph_stats import NodeCost, graph_stats
from edgekit.exporters.onnx import export_onnx
from edgekit.runtimes.ort import OrtSession
from edgekit.runtimes.spec import TensorSpec
from edgekit.targets.lut import BlockTable
from edgekit.targets.measure import LatencyStats, measure_latency

__all__ = ["ModuleTiming", "time_module", "build_block_table", "time_subnets", "sample_configs", "default_tables_dir"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModuleTiming:
    stats: LatencyStats
    ops: tuple[NodeCost, ...]
    macs: int


def default_tables_dir() -> Path:
    """Where fitted block tables and calibrations live: beside the latency store (EDGEKIT_CACHE_DIR)."""
    from edgekit.targets.store import default_store_path

    return default_store_path().parent


def time_module(
    module: torch.nn.Module, input_shape: Sequence[int], *, threads: int = 1, warmup: int = 10, runs: int = 50,
    work_dir: Path | None = None,
) -> ModuleTiming:
    """Export ``module`` for a fixed input shape and time it in onnxruntime on this host."""
    spec = (TensorSpec("input", tuple(input_shape), "float32"),)
    example = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "module.onnx"
        export_onnx(module.eval(), spec, (example,), path)
        stats = graph_stats(path)
        session = OrtSession(path, threads=threads, inputs=spec)
        feeds = {"input": example.numpy()}
        timing = measure_latency(session, feeds, warmup=warmup, runs=runs)
    return ModuleTiming(timing, stats.nodes, stats.macs)


def build_block_table(
    space, resolutions: Iterable[int], *, target: str = "host", threads: int = 1, warmup: int = 10, runs: int = 40,
    progress: Progress | None = None,
) -> BlockTable:
    """Time every distinct block of ``space`` at ``resolutions`` alone; the table's fit comes later."""
    import onnxruntime

    from edgekit.models.ofa.blocks import build_block, space_blocks

    say = progress or (lambda message: None)
    torch.manual_seed(0)
    specs = space_blocks(space, list(resolutions))
    entries = {}
    for index, spec in enumerate(specs):
        say(f"timing block {index + 1}/{len(specs)}: {spec.key}")
        module, shape = build_block(spec, space)
        entries[spec.key] = time_module(module, shape, threads=threads, warmup=warmup, runs=runs).stats.p50_ms
    meta = {"space": space.name, "resolutions": sorted(set(resolutions)), "warmup": warmup, "runs": runs,
            "onnxruntime": onnxruntime.__version__}
    return BlockTable(target, "onnxruntime", "fp32", threads, entries, meta=meta)


def time_subnets(
    space, configs: Sequence, *, threads: int = 1, warmup: int = 10, runs: int = 40, progress: Progress | None = None,
) -> list[ModuleTiming]:
    """Materialize each config from a randomly initialised supernet and time the whole subnet."""
    from edgekit.models.ofa import OFASupernet, materialize

    say = progress or (lambda message: None)
    torch.manual_seed(0)
    supernet = OFASupernet(space).eval()
    timings = []
    for index, config in enumerate(configs):
        say(f"timing subnet {index + 1}/{len(configs)}")
        timings.append(time_module(materialize(supernet, config), (1, 3, config.r, config.r),
                                   threads=threads, warmup=warmup, runs=runs))
    return timings


def sample_configs(space, n: int, seed: int, resolutions: Sequence[int]) -> list:
    """``n`` random subnets at the given resolutions (an injected, seeded ``random.Random``)."""
    from edgekit.models.ofa import sample

    rng = random.Random(seed)
    return [sample(space, rng).replace(r=rng.choice(list(resolutions))) for _ in range(n)]
