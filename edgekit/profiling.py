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
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import torch

from edgekit.exporters.graph_stats import NodeCost, graph_stats
from edgekit.exporters.onnx import export_onnx
from edgekit.runtimes.ort import OrtSession
from edgekit.runtimes.spec import TensorSpec
from edgekit.targets.lut import BlockTable
from edgekit.targets.measure import LatencyStats, measure_latency

if TYPE_CHECKING:
    from edgekit.targets.calibrated import Calibration

__all__ = [
    "ModuleTiming", "time_module", "build_block_table", "time_subnets", "sample_configs", "fit_configs",
    "CalibrationRun", "calibrate_target", "precision_variant",
]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModuleTiming:
    stats: LatencyStats
    ops: tuple[NodeCost, ...]
    macs: int


def precision_variant(path: Path, spec: Sequence[TensorSpec], precision: str) -> Path:
    """The fp32 ONNX file at ``path`` as ``precision`` (written beside it), for timing: int8 static QDQ
    with the setting the export pipeline most often picks here (uint8 activations, reduce_range) and a
    few random calibration samples (timing does not depend on the scales), or fp16."""
    import numpy as np

    from edgekit.exporters.quantize import Int8Candidate, convert_fp16, quantize_int8

    if precision == "fp32":
        return path
    if precision == "fp16":
        return convert_fp16(path, path.with_suffix(".fp16.onnx"))
    assert precision == "int8", precision
    rng = np.random.default_rng(0)
    calib = [{s.name: rng.standard_normal(s.concrete({})).astype(np.float32) for s in spec} for _ in range(4)]
    return quantize_int8(path, path.with_suffix(".int8.onnx"), calib, spec, candidates=(Int8Candidate("uint8", True),),
                         bench_runs=2).path


def time_module(
    module: torch.nn.Module, input_shape: Sequence[int], *, threads: int = 1, warmup: int = 10, runs: int = 50,
    work_dir: Path | None = None, precision: str = "fp32",
) -> ModuleTiming:
    """Export ``module`` for a fixed input shape (as ``precision``) and time it in onnxruntime here.

    ``ops`` describe the fp32 graph, which is what the latency models predict from at every precision.
    """
    spec = (TensorSpec("input", tuple(input_shape), "float32"),)
    example = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = Path(tmp) / "module.onnx"
        export_onnx(module.eval(), spec, (example,), path)
        stats = graph_stats(path)
        path = precision_variant(path, spec, precision)
        session = OrtSession(path, threads=threads, inputs=spec)
        feeds = {"input": example.numpy()}
        timing = measure_latency(session, feeds, warmup=warmup, runs=runs)
    return ModuleTiming(timing, stats.nodes, stats.macs)


def build_block_table(
    space, resolutions: Iterable[int], *, target: str = "host", threads: int = 1, warmup: int = 10, runs: int = 40,
    progress: Progress | None = None, precision: str = "fp32",
) -> BlockTable:
    """Time every distinct block of ``space`` at ``resolutions`` alone; the table's fit comes later."""
    import onnxruntime

    from edgekit.models.ofa.blocks import build_block
    from edgekit.models.ofa.specs import space_blocks

    say = progress or (lambda message: None)
    torch.manual_seed(0)
    specs = space_blocks(space, list(resolutions))
    entries = {}
    for index, spec in enumerate(specs):
        say(f"timing block {index + 1}/{len(specs)}: {spec.key}")
        module, shape = build_block(spec, space)
        entries[spec.key] = time_module(module, shape, threads=threads, warmup=warmup, runs=runs,
                                        precision=precision).stats.p50_ms
    meta = {"space": space.name, "resolutions": sorted(set(resolutions)), "warmup": warmup, "runs": runs,
            "onnxruntime": onnxruntime.__version__}
    return BlockTable(target, "onnxruntime", precision, threads, entries, meta=meta)


def time_subnets(
    space, configs: Sequence, *, threads: int = 1, warmup: int = 10, runs: int = 40, progress: Progress | None = None,
    precision: str = "fp32",
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
                                   threads=threads, warmup=warmup, runs=runs, precision=precision))
    return timings


def sample_configs(space, n: int, seed: int, resolutions: Sequence[int]) -> list:
    """``n`` random subnets at the given resolutions (an injected, seeded ``random.Random``)."""
    from edgekit.models.ofa import sample

    rng = random.Random(seed)
    return [sample(space, rng).replace(r=rng.choice(list(resolutions))) for _ in range(n)]


def fit_configs(space, n: int, seed: int, resolutions: Sequence[int]) -> list:
    """Subnets to fit a block table on: the smallest and largest at the lowest and highest resolution
    (so the fit spans the whole latency range instead of extrapolating to it), plus ``n`` random ones."""
    from edgekit.models.ofa import largest, smallest

    low, high = min(resolutions), max(resolutions)
    ends = [smallest(space, low), smallest(space, high), largest(space, low), largest(space, high)]
    return ends + sample_configs(space, n, seed, resolutions)


@dataclass(frozen=True)
class CalibrationRun:
    """A fitted calibration, its leave-one-out error, and what was measured for it."""

    calibration: "Calibration"
    loo_median_abs_pct_error: float
    measured: tuple[tuple[str, float], ...]


def calibrate_target(
    target, *, unit: str | None = None, precision: str = "fp32", threads: int = 1, warmup: int = 10, runs: int = 40,
    agent=None, store=None, progress: Progress | None = None,
) -> "CalibrationRun":
    """Measure the calibration zoo on ``target`` (here, or on the device through ``agent``) and fit the
    per-op model. Each measurement also goes to ``store`` (a LatencyStore) keyed by the file's sha256."""
    import numpy as np

    from edgekit.calibration_zoo import calibration_zoo
    from edgekit.runtimes.errors import UsageError
    from edgekit.targets.calibrated import fit_calibration
    from edgekit.targets.profile import profile_model

    say = progress or (lambda message: None)
    # Measurements run ONNX files through onnxruntime (here or in the device's agent).
    unit = unit or next((u.name for u in target.units if "onnx" in u.formats), None)
    if unit is None:
        raise UsageError(f"target {target.name} has no unit that runs ONNX, which calibration measures with onnxruntime")
    if "onnx" not in target.unit(unit).formats:
        raise UsageError(f"unit {unit} of {target.name} does not run ONNX; calibration measures ONNX through onnxruntime")
    if target.name != "host" and agent is None:
        raise UsageError(f"calibrating {target.name} needs measurements on the device: pass --agent URL --token T")
    zoo = calibration_zoo()
    ops_list, measured = [], []
    with tempfile.TemporaryDirectory(prefix="edgekit-calibrate-") as tmp:
        for index, model in enumerate(zoo):
            say(f"measuring {index + 1}/{len(zoo)}: {model.name}")
            path = Path(tmp) / f"{model.name}.onnx"
            spec = (TensorSpec("input", model.input_shape, "float32"),)
            export_onnx(model.module, spec, (torch.randn(*model.input_shape),), path)
            ops_list.append(graph_stats(path).nodes)
            path = precision_variant(path, spec, precision)
            if agent is None:
                result = profile_model(path, threads=threads, warmup=warmup, runs=runs)
            else:
                result = agent.profile(path, threads, warmup, runs)
            measured.append(result.stats.p50_ms)
            if store is not None:
                store.record(result.to_record(target.name, precision, {"model": f"calibration zoo: {model.name}"}))
    calibration = fit_calibration(ops_list, measured, target, unit, precision, threads)
    errors = []
    for i in range(len(zoo)):  # leave-one-out: how it predicts a model it was not fitted on
        rest = [j for j in range(len(zoo)) if j != i]
        held = fit_calibration([ops_list[j] for j in rest], [measured[j] for j in rest], target, unit, precision, threads)
        errors.append(abs(held.predict(ops_list[i]).ms / measured[i] - 1) * 100)
    return CalibrationRun(calibration, float(np.median(errors)), tuple((m.name, ms) for m, ms in zip(zoo, measured)))
