"""Selection by measurement for any model: ``edgekit select --model REF --eval-data val.npz --metric top1``.

A family without a search space (your own model, a .pt2, MobileNetV3, a segmenter) has a small, discrete
set of candidates: compression level (``--levels``: MACs removed by structured pruning, 0 = the model
as given) x the (unit, precision, format) options the target runs and edgekit can write. Each candidate
is exported through the export pipeline (validated against torch), its latency is the pipeline's one
chooser (measured on the host; measured > calibrated > modeled on a device), and its accuracy is
*measured* on the eval data through the exported file and its runtime. Nothing is predicted.

Cheap first: every candidate's latency is known once its file is written; accuracy is measured only for
candidates that fit the budget, in order of an upper bound (a level's fp32 accuracy bounds its pruned /
quantized files: pruning and quantization are assumed not to raise accuracy, which the measurements
check), and stops when no unmeasured candidate can beat the best measured one; the output says how
many were measured. Results are cached by content (the model's weights and input specs, the eval data's
sha256, the target): a second ``select`` with another budget re-uses every file and score.
int8 calibrates on the first ``calibration`` samples of the eval data; accuracy is scored on the rest.

Example:
    >>> from edgekit.models.registry import ModelRequest                                      # doctest: +SKIP
    >>> result = select_measured(MeasuredRequest(ModelRequest("tests.fixtures.tiny_models:tiny_cnn"),
    ...                          Path("val.npz"), "top1", "host", 5.0))                       # doctest: +SKIP
    >>> result.best.candidate, result.best.accuracy                                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgekit.models.registry import ModelRequest, ModelSource, find_family
from edgekit.runtimes.bundle import read_bundle
from edgekit.runtimes.errors import UsageError, one_line
from edgekit.runtimes.files import atomic_write_text
from edgekit.search.eval_data import EvalData, Metric, get_metric, load_eval_data
from edgekit.search.evolution import Budget
from edgekit.search.select import FIXED_MARGIN, deployment_options

__all__ = ["MeasuredRequest", "MeasuredCandidate", "CandidateResult", "MeasuredSelection", "select_measured",
           "selection_record", "export_choice", "selection_cache_dir"]

Progress = Callable[[str], None]
CALIBRATION = 64  # eval samples set apart for int8 calibration (never scored)
# A measured latency still varies run to run on a shared host (about +-5%): a choice right at the budget missed it
# when timed again (benchmarks/select_any.py: 1.226 ms chosen under 1.25 ms re-timed above it), so it keeps 5%.
MEASURED_MARGIN = 0.05
FAMILY_LEVELS = (0.0, 0.3, 0.5)  # a segmenter family's default compression levels (pruned, then fine-tuned)


@dataclass(frozen=True)
class MeasuredRequest:
    model: ModelRequest
    eval_data: Path | None  # None: the family's own labelled held-out data (a segmenter's val scenes)
    metric: str | None  # None: miou for a segmenter, else top1
    target: str
    budget_ms: float
    levels: tuple[float, ...] | None = None  # None: (0,) for a model without training data, FAMILY_LEVELS for a segmenter
    resolutions: tuple[int, ...] | None = None  # square input sizes to try (None: the model's own); eval data is resized
    unit: str | None = None
    precision: str = "auto"
    target_file: Path | None = None
    margin: float | None = None  # modeled latency must fit budget / (1 + margin); measured (host) needs none
    runs: int = 30  # host timing runs per candidate
    cache_dir: Path | None = None
    finetune_steps: int = 300  # a family with training data: distillation fine-tuning of each pruned level


@dataclass(frozen=True)
class MeasuredCandidate:
    level: float
    unit: str
    precision: str
    format: str
    resolution: int | None = None  # None: the model's own input size

    def label(self) -> str:
        pruned = f"pruned {100 * self.level:.0f}% MACs" if self.level else "dense"
        size = f" at {self.resolution}px" if self.resolution else ""
        return f"{pruned}{size}, {self.unit}/{self.precision}/{self.format}"


@dataclass(frozen=True)
class CandidateResult:
    candidate: MeasuredCandidate
    latency_ms: float
    latency_source: str
    accuracy: float | None = None  # None: not measured (it could not beat the choice)
    bundle: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.candidate), "latency_ms": round(self.latency_ms, 4), "latency_source": self.latency_source,
                "accuracy": self.accuracy, "measured": self.accuracy is not None}


@dataclass(frozen=True)
class MeasuredSelection:
    best: CandidateResult | None  # None only before :func:`_choose`
    results: tuple[CandidateResult, ...]
    budget_ms: float
    margin: float
    metric: Metric
    eval_samples: int
    calibration_samples: int
    measured_now: int  # accuracy runs in this call (0 when everything came from the cache)
    exported_now: int
    fastest: CandidateResult

    @property
    def front(self) -> tuple[CandidateResult, ...]:
        """Measured candidates no other measured one beats on both latency and accuracy, fastest first."""
        measured = sorted((r for r in self.results if r.accuracy is not None), key=lambda r: (r.latency_ms, -r.accuracy))
        front, best = [], -np.inf
        for r in measured:
            if r.accuracy > best:
                front.append(r)
                best = r.accuracy
        return tuple(front)

    def fits(self, result: CandidateResult) -> bool:
        margin = min(self.margin, MEASURED_MARGIN) if result.latency_source == "measured" else self.margin
        return result.latency_ms * (1.0 + margin) <= self.budget_ms


def selection_cache_dir() -> Path:
    """Where measured candidates are cached: ``$EDGEKIT_CACHE_DIR/select``, else the user cache's ``select``."""
    from edgekit.targets.store import default_store_path

    return default_store_path().parent / "select"


def _source_key(source: ModelSource) -> str:
    """The model's content: weights, buffers and input specs (the same model gives the same key)."""
    digest = hashlib.sha256()
    graph = source.graph
    digest.update(json.dumps([[s.name, list(map(str, s.shape)), s.dtype] for s in graph.inputs]).encode())
    for name, tensor in graph.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _pruned(source: ModelSource, level: float, finetune_steps: int, name: str | None = None) -> ModelSource:
    """``source`` with ``level`` of its MACs removed by structured pruning (torch-pruning). A segmenter family
    with its own training scenes: the shipped level of built-in ``name`` when one matches (fine-tuned on a GPU),
    else pruned as ``edgekit compress`` prunes and fine-tuned for ``finetune_steps`` with distillation."""
    from edgekit.compress.allocation import DEFAULT_ALLOCATION
    from edgekit.compress.levels import shipped_level
    from edgekit.compress.prune import prune_to_macs
    from edgekit.compress.run import SPEED_ROUND_TO

    module, example = source.graph.module, source.graph.example_inputs[0]
    own_scenes = source.task == "segmentation" and source.data.held_out is not None
    shipped = shipped_level(name, level, DEFAULT_ALLOCATION, SPEED_ROUND_TO) if own_scenes else None
    if shipped is not None:
        pruned = shipped[0]
    elif own_scenes:
        import torch

        from edgekit.compress.data import family_scenes
        from edgekit.compress.finetune import FinetuneConfig, finetune
        from edgekit.compress.run import TRAIN_SCENES
        from edgekit.compress.train_levels import prune_level

        pruned = prune_level(module, example, level, DEFAULT_ALLOCATION, SPEED_ROUND_TO)[0].model
        if finetune_steps > 0:
            train = family_scenes(TRAIN_SCENES, int(example.shape[-1]), "train")
            finetune(pruned, module, torch.from_numpy(train.images), torch.from_numpy(train.labels),
                     FinetuneConfig(finetune_steps, lr=3e-3))
    else:
        pruned = prune_to_macs(module, example, level, round_to=SPEED_ROUND_TO).model  # a pruned copy
    graph = replace(source.graph, module=pruned.eval())
    return replace(source, graphs={graph.name: graph}, name=f"{source.name}-pruned{round(100 * level)}")


def _level_key(request: MeasuredRequest, source: ModelSource, level: float) -> str:
    """How a level was made, for its cached bundles' names: fine-tuning steps, or the shipped level's file hash."""
    if not level or source.task != "segmentation":
        return ""
    from edgekit.compress.allocation import DEFAULT_ALLOCATION
    from edgekit.compress.levels import find_level, level_path, weights_sha256
    from edgekit.compress.run import SPEED_ROUND_TO

    name = request.model.ref
    if source.data.held_out is not None and name and find_level(name, level, DEFAULT_ALLOCATION, SPEED_ROUND_TO):
        return f"-shipped{weights_sha256(level_path(name, level))[:8]}"
    return f"-ft{request.finetune_steps}"


def _nearest(array: np.ndarray, size: int) -> np.ndarray:
    """``array``'s last two axes resized to ``size`` x ``size`` by nearest-neighbour sampling.

    Example:
        >>> _nearest(np.arange(16).reshape(1, 4, 4), 2).tolist()
        [[[5, 7], [13, 15]]]
    """
    def index(length: int) -> np.ndarray:
        return np.minimum(((np.arange(size) + 0.5) * length / size).astype(np.int64), length - 1)

    h, w = array.shape[-2:]
    return np.ascontiguousarray(array[..., index(h), :][..., index(w)])


def _resized(data: EvalData, size: int | None) -> EvalData:
    """``data`` with its images (and label maps) at ``size`` x ``size``."""
    if size is None:
        return data
    labels = data.labels
    if labels.ndim == 3 and labels.shape[1:] == data.inputs.shape[-2:]:
        labels = _nearest(labels, size)
    return EvalData(_nearest(data.inputs, size), labels, data.path, f"{data.sha256}-{size}")


def _at_resolution(family, request: MeasuredRequest, source: ModelSource, size: int | None) -> ModelSource:
    """The model loaded with a ``size`` x ``size`` example input; UsageError when it cannot take that size."""
    if size is None:
        return source
    spec = source.graph.inputs[0]
    if len(spec.shape) != 4:
        raise UsageError(f"--resolutions {size}: the model's input {spec.name!r} is {spec.shape_str()}, not an image")
    shape = (1, int(source.graph.example_inputs[0].shape[1]), size, size)
    try:
        resized = family.load(replace(request.model, input_shape=shape))
    except Exception as exc:
        raise UsageError(f"--resolutions {size}: the model cannot take a {size}x{size} input ({one_line(exc)})") from None
    got = tuple(resized.graph.example_inputs[0].shape)
    if got != shape:
        raise UsageError(f"--resolutions {size}: the model's input stays {got}; its resolution cannot change")
    return resized


def _family_eval(source: ModelSource, ref: str | None) -> EvalData:
    """The family's labelled held-out data as eval data (UsageError when it has none)."""
    if source.data.held_out is None:
        raise UsageError(f"--model {ref}: no search space and no labelled data of its own: pass --eval-data val.npz "
                         "(inputs, labels) and --metric")
    feeds, labels = source.data.held_out()
    name = source.graph.inputs[0].name
    inputs = np.concatenate([np.asarray(f[name]) for f in feeds])
    labels = np.asarray(labels)
    digest = hashlib.sha256(inputs.tobytes() + labels.tobytes()).hexdigest()
    return EvalData(inputs, labels, Path(f"<held-out data of {source.name}>"), digest)


def _calibration_data(samples: np.ndarray, work: Path, size: int | None = None) -> Path:
    path = work / f"calibration{f'-{size}' if size else ''}.npy"
    if not path.exists():
        np.save(path, samples.astype(np.float32))
    return path


def _score(bundle: Path, data: EvalData, metric: Metric, batch: int = 32) -> float:
    import edgekit.runtimes as rt

    session = rt.load(bundle, threads=1)
    name = session.inputs[0].name
    outputs = [next(iter(session.run({name: data.inputs[i:i + batch]}).values()))
               for i in range(0, len(data), batch)]
    return metric.score(np.concatenate(outputs), data.labels)


def _check_fits(source: ModelSource, data: EvalData, metric: Metric) -> None:
    """The eval data fits the model's input, and the labels its output and the metric (before any export)."""
    import torch

    graph = source.graph
    if len(graph.inputs) != 1:
        raise UsageError(f"--eval-data: the model has {len(graph.inputs)} inputs; measured selection feeds one")
    spec = graph.inputs[0]
    sample = tuple(data.inputs.shape[1:])
    if len(sample) != len(spec.shape) - 1 or any(isinstance(d, int) and d != s for d, s in zip(spec.shape[1:], sample)):
        raise UsageError(f"--eval-data {data.path}: inputs shaped (N, {', '.join(map(str, sample))}) do not fit the "
                         f"model's input {spec.name!r} {spec.shape_str()}")
    with torch.no_grad():
        out = graph.module(torch.from_numpy(data.inputs[:2].astype(np.float32)))
    out = next(iter(out.values())) if isinstance(out, Mapping) else out[0] if isinstance(out, (tuple, list)) else out
    metric.check(out.numpy(), data.labels, f"--eval-data {data.path} with --metric {metric.name}")


def _latency(manifest, target_name: str, unit: str) -> tuple[float, str] | None:
    for entry in manifest.latency:
        if entry.get("target") == target_name and entry.get("ms") is not None and (
                target_name == "host" or entry.get("unit") == unit):
            return float(entry["ms"]), str(entry["source"])
    return None


def select_measured(request: MeasuredRequest, progress: Progress | None = None) -> MeasuredSelection:
    """Export, time and score the candidates (see the module docstring); the most accurate one that fits."""
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle, resolve_target

    say = progress or (lambda message: None)
    Budget(request.budget_ms, None)  # a number > 0, or the one-line error every selection gives
    bad = [level for level in request.levels or () if not 0.0 <= level < 1.0]
    if bad:
        raise UsageError(f"--levels {bad[0]}: a compression level is the fraction of MACs removed, in [0, 1)")
    data = None if request.eval_data is None else load_eval_data(request.eval_data)
    target = resolve_target(request.target, request.target_file)
    options = deployment_options(target, request.unit, request.precision, writable_only=True, all_formats=True)
    family = find_family(request.model.ref)
    if family.variant is not None:
        raise UsageError(f"--model {request.model.ref}: a language model; select it by generation budget instead")
    say(f"loading model {request.model.ref}")
    source = family.load(request.model)
    if not source.single_graph:
        raise UsageError(f"--model {request.model.ref}: {len(source.graphs)} graphs; measured selection takes one-graph models")
    metric = get_metric(request.metric or ("miou" if source.task == "segmentation" else "top1"))
    own_data = data is None  # the family's held-out data; int8 calibrates on its own calibration data
    data = _family_eval(source, request.model.ref) if own_data else data
    _check_fits(source, data, metric)
    calibration = 0 if own_data and source.data.int8_calibration is not None else min(CALIBRATION, len(data) // 4)
    scored, calib = data.split(calibration)
    if len(scored) == 0:
        raise UsageError(f"--eval-data {data.path}: {len(data)} samples leave none to score after {calibration} for calibration")
    key = f"{_source_key(source)}-{target.name}"
    work = (request.cache_dir or selection_cache_dir()) / key
    work.mkdir(parents=True, exist_ok=True)
    scores_file = work / f"scores-{data.sha256[:16]}-{calibration}-{metric.name.replace(':', '.')}.json"
    scores: dict[str, float] = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    results: list[CandidateResult] = []
    exported = 0
    levels = request.levels or (FAMILY_LEVELS if own_data and source.task == "segmentation" else (0.0,))
    sizes = tuple(dict.fromkeys((None, *request.resolutions))) if request.resolutions else (None,)  # own size too
    bad_size = [size for size in sizes if size is not None and size < 1]
    if bad_size:
        raise UsageError(f"--resolutions {bad_size[0]}: expected input sizes in pixels >= 1")
    scored_at = {size: _resized(scored, size) for size in sizes}
    for size, level in ((size, level) for size in sizes for level in sorted(set(levels))):
        base = _at_resolution(family, request, source, size)
        level_source = base if level == 0 else None
        tuned = _level_key(request, source, level)  # hashes the level's file: once per level, not per format
        for fmt, precision in dict.fromkeys((o.format, o.precision) for o in options):
            bundle = work / f"L{round(1000 * level)}{tuned}{f'-r{size}' if size else ''}-{fmt}-{precision}"
            if not (bundle / "manifest.json").is_file():
                if level_source is None:
                    say(f"pruning {100 * level:.0f}% of the MACs")
                    level_source = _pruned(base, level, request.finetune_steps, request.model.ref)
                say(f"exporting {MeasuredCandidate(level, '-', precision, fmt, size).label()}")
                try:
                    export_bundle(ExportRequest(
                        out=bundle, model=request.model, source=level_source, target=target.name,
                        target_file=request.target_file,
                        output=OutputConfig(format=fmt, precision=precision,
                                            int8_calibration_data=_calibration_data(
                                                _nearest(calib, size) if size else calib, work, size)
                                            if calibration and precision == "int8" else None,
                                            int8_calibration_samples=max(calibration, CALIBRATION if own_data else 1)),
                        measure=MeasureConfig(runs=request.runs if target.name == "host" else 0), force=False))
                except Exception as exc:  # a candidate that cannot be written (e.g. int8 collapse) is reported, not fatal
                    say(f"skipped {fmt} {precision} at level {level:g}: {one_line(exc)}")
                    continue
                exported += 1
            manifest = read_bundle(bundle).manifest
            for option in (o for o in options if (o.format, o.precision) == (fmt, precision)):
                found = _latency(manifest, target.name, option.unit)
                if found is None:
                    continue
                candidate = MeasuredCandidate(level, option.unit, precision, fmt, size)
                results.append(CandidateResult(candidate, found[0], found[1], scores.get(bundle.name), str(bundle)))
    if not results:
        raise UsageError(f"no candidate of {request.model.ref} could be exported and timed for {target.name}")
    margin = FIXED_MARGIN if request.margin is None else request.margin
    selection = MeasuredSelection(None, tuple(results), request.budget_ms, margin, metric, len(scored), calibration, 0,
                                  exported, min(results, key=lambda r: r.latency_ms))
    return _choose(selection, scored_at, scores, scores_file, say)


def _choose(selection: MeasuredSelection, data: Mapping[int | None, EvalData], scores: dict[str, float],
            scores_file: Path, say: Progress) -> MeasuredSelection:
    """Measure accuracy lazily: fitting candidates by upper bound (their level's fp32 accuracy), best first."""
    results = list(selection.results)
    measured = 0

    def measure(index: int) -> float:
        nonlocal measured
        result = results[index]
        name = Path(result.bundle).name
        if name not in scores:
            say(f"measuring {selection.metric.name} of {result.candidate.label()}")
            scores[name] = _score(Path(result.bundle), data[result.candidate.resolution], selection.metric)
            atomic_write_text(scores_file, json.dumps(scores, indent=1) + "\n")
            measured += 1
        results[index] = replace(result, accuracy=scores[name])
        return scores[name]

    bounds: dict[tuple[float, int | None], float] = {}

    def group(r: CandidateResult) -> tuple[float, int | None]:
        return r.candidate.level, r.candidate.resolution

    for i, r in enumerate(results):  # a level's fp32 file (at each resolution) bounds its variants
        if r.candidate.precision == "fp32" and group(r) not in bounds:
            bounds[group(r)] = measure(i)
    fitting = [i for i, r in enumerate(results) if selection.fits(r)]
    order = sorted(fitting, key=lambda i: (-bounds.get(group(results[i]), np.inf), results[i].latency_ms))
    best: int | None = None
    for i in order:
        bound = bounds.get(group(results[i]), np.inf)
        if best is not None and results[best].accuracy >= bound:
            break  # nothing left can beat the choice
        value = measure(i)
        if best is None or value > results[best].accuracy or (
                value == results[best].accuracy and results[i].latency_ms < results[best].latency_ms):
            best = i
    if best is None:
        from edgekit.search.evolution import NoFeasibleCandidate

        fastest = selection.fastest
        raise NoFeasibleCandidate(
            f"no candidate meets {selection.budget_ms:g} ms (with a {100 * selection.margin:g}% margin for prediction "
            f"error, {100 * MEASURED_MARGIN:g}% for measured noise): the fastest is {fastest.candidate.label()} at {fastest.latency_ms:.3f} ms "
            f"({fastest.latency_source})", fastest)
    return replace(selection, best=results[best], results=tuple(results), measured_now=measured)


def selection_record(selection: MeasuredSelection, request: MeasuredRequest) -> dict[str, Any]:
    """JSON-ready: the choice with its latency and accuracy sources, the front, counts."""
    best = selection.best
    return {
        "model": request.model.ref, "target": request.target, "budget_ms": selection.budget_ms, "margin": selection.margin,
        "metric": selection.metric.name, "eval_data": str(request.eval_data or "the family's held-out data"), "eval_samples": selection.eval_samples,
        "calibration_samples": selection.calibration_samples,
        "best": None if best is None else {**best.to_json(), "accuracy_source": f"measured ({selection.metric.name} on "
                                                                                 f"{selection.eval_samples} eval samples)"},
        "fastest": selection.fastest.to_json(),
        "pareto": [r.to_json() for r in selection.front],
        "candidates": [r.to_json() for r in selection.results],
        "measured": {"candidates": len(selection.results), "accuracy_measured": sum(r.accuracy is not None for r in selection.results),
                     "accuracy_runs_now": selection.measured_now, "exported_now": selection.exported_now},
    }



def export_choice(selection: MeasuredSelection, out: Path, *, force: bool = False) -> Path:
    """Write the chosen candidate's bundle (validated and timed when it was measured) to ``out``, atomically,
    with the selection recorded in the manifest's ``extra.search``; refuses what edgekit did not write."""
    from edgekit.runtimes.bundle_writer import BundleWriter

    assert selection.best is not None
    source = Path(selection.best.bundle)
    manifest = read_bundle(source).manifest
    best = selection.best
    record = {"by": "measurement", "budget_ms": selection.budget_ms, "metric": selection.metric.name,
              "choice": best.to_json(), "eval_samples": selection.eval_samples,
              "budget_held": selection.fits(best), "pareto": [r.to_json() for r in selection.front]}
    with BundleWriter(out, force=force) as stage:
        for name in manifest.files:
            (stage.path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, stage.path / name)
        stage.commit(replace(manifest, files={}, extra={**manifest.extra, "search": record}))
    return out
