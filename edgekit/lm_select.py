"""Selection of a language model by a generation budget: ``edgekit select --model slm-encdec,slm-deconly
--budget-first-token-ms 5 --budget-tokens-per-s 1000 --input-tokens 64 --target host``.

The candidates are every model given x every precision (fp32, and the int8 / fp16 decoder variants the export
writes only when they keep ``--min-agreement`` of fp32's greedy tokens) x every format the target runs and
edgekit can write for it (TFLite takes the encoder-decoder SLMs in their static-shape form). Each is exported
through the export pipeline and cached by content like :mod:`edgekit.measured_select`.

Speed: on the host, first-token ms and decode tokens/s of greedy generation at ``input_tokens`` (16 new tokens,
all candidates interleaved, 1 thread: measured). On a device, the decoder step's latency in the bundle's
manifest gives tokens/s and the encoder graph's predicted latency plus one step gives the first token
(modeled or calibrated, as the manifest says). Accuracy: the family's held-out task score (exact match on 200
held-out examples for edgekit's SLMs) measured through each bundle, or, for a model without task data, greedy
token agreement with its fp32 bundle on seeded prompts.

Example:
    >>> from edgekit.models.registry import ModelRequest                                           # doctest: +SKIP
    >>> choice = select_lm(LmRequest(("slm-encdec",), "host", first_token_ms=5.0))                 # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.runtimes.errors import UsageError, one_line
from edgekit.runtimes.files import atomic_write_text

__all__ = ["LmRequest", "LmCandidate", "LmSelection", "select_lm"]

Progress = Callable[[str], None]
NEW_TOKENS = 16


@dataclass(frozen=True)
class LmRequest:
    models: tuple[str, ...]
    target: str
    first_token_ms: float | None = None
    tokens_per_s: float | None = None
    input_tokens: int = 16
    precision: str = "auto"
    min_agreement: float = 0.99
    runs: int = 10
    target_file: Path | None = None
    cache_dir: Path | None = None

    def check(self) -> None:
        if self.first_token_ms is None and self.tokens_per_s is None:
            raise UsageError("a language model is selected by --budget-first-token-ms and/or --budget-tokens-per-s")
        for name, value in (("--budget-first-token-ms", self.first_token_ms), ("--budget-tokens-per-s", self.tokens_per_s)):
            if value is not None and not value > 0:
                raise UsageError(f"{name} must be > 0, got {value:g}")
        if self.input_tokens < 1:
            raise UsageError(f"--input-tokens must be >= 1, got {self.input_tokens}")


@dataclass(frozen=True)
class LmCandidate:
    model: str
    format: str
    precision: str
    first_token_ms: float
    tokens_per_s: float
    speed_source: str
    accuracy: float
    accuracy_source: str
    bundle: str = ""

    def label(self) -> str:
        return f"{self.model} {self.format} {self.precision}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("bundle")
        return data


@dataclass(frozen=True)
class LmSelection:
    best: LmCandidate
    candidates: tuple[LmCandidate, ...]
    skipped: tuple[str, ...]
    request: LmRequest

    def fits(self, c: LmCandidate) -> bool:
        return _fits(self.request, c)

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {"models": list(r.models), "target": r.target, "budget": {"first_token_ms": r.first_token_ms,
                "tokens_per_s": r.tokens_per_s, "input_tokens": r.input_tokens, "new_tokens": NEW_TOKENS},
                "best": self.best.to_json(), "candidates": [dict(c.to_json(), fits=self.fits(c)) for c in self.candidates],
                "skipped": list(self.skipped)}


def _fits(r: LmRequest, c: LmCandidate) -> bool:
    return ((r.first_token_ms is None or c.first_token_ms <= r.first_token_ms)
            and (r.tokens_per_s is None or c.tokens_per_s >= r.tokens_per_s))


def _exact_match(lm, prompts, targets, new_tokens: int) -> float:
    outputs = lm.generate(prompts, max_new_tokens=new_tokens)
    texts = [lm.tokenizer.decode(row) for row in lm.completions(outputs, prompts)]
    return float(np.mean([t == g for t, g in zip(texts, targets)]))


def _accuracy(bundle: Path, fp32: Path, cache: dict[str, Any]) -> tuple[float, str]:
    """The task score measured through the bundle (exact match on the family's held-out examples), else the greedy
    token agreement with the fp32 bundle; cached by the bundle's directory name."""
    import edgekit.runtimes as rt
    from edgekit.models.slm.quantize import agreement, task_prompts

    if bundle.name in cache:
        return tuple(cache[bundle.name])  # type: ignore[return-value]
    lm = rt.load(bundle, threads=1)
    prompts, targets, what, new_tokens = task_prompts(lm.bundle.manifest)
    if targets is not None:
        found = (_exact_match(lm, prompts, targets, new_tokens), f"exact match on {what}, measured")
    else:
        record = agreement(rt.load(fp32, threads=1), lm, prompts, None, new_tokens)
        found = (record["token_agreement"], f"greedy token agreement with fp32 on {what}, measured")
    cache[bundle.name] = list(found)
    return found


def _device_speed(bundle: Path, target, precision: str) -> tuple[float, float, str] | None:
    """(first token ms, tokens/s, source) on a device from the manifest's decoder-step latency and the encoder
    graph's prediction; None when the target has no latency for it."""
    from edgekit.exporters.base import exporter_for
    from edgekit.export_steps import predict_on_target
    from edgekit.runtimes.bundle import read_bundle

    manifest = read_bundle(bundle).manifest
    step = next((e for e in manifest.latency if e.get("target") == target.name and e.get("ms")), None)
    if step is None:
        return None
    first = float(step["ms"])
    if "encoder" in manifest.graphs:
        entries, _ = predict_on_target(exporter_for(manifest.format), bundle / manifest.graph("encoder").file, target,
                                       precision, step.get("unit"))
        if not entries:
            return None
        first += float(entries[0]["ms"])
    return first, 1000.0 / float(step["ms"]), str(step["source"])


def select_lm(request: LmRequest, progress: Progress | None = None) -> LmSelection:
    """Export, time and score every candidate (see the module docstring); the most accurate one within budget."""
    from edgekit.measured_select import selection_cache_dir
    from edgekit.models.registry import ModelRequest, find_family
    from edgekit.pipeline import ExportRequest, MeasureConfig, OutputConfig, export_bundle, resolve_target
    from edgekit.search.select import deployment_options

    say = progress or (lambda message: None)
    request.check()
    target = resolve_target(request.target, request.target_file)
    options = deployment_options(target, precision=request.precision, writable_only=True, all_formats=True)
    pairs = list(dict.fromkeys((o.format, o.precision) for o in options))
    work = (request.cache_dir or selection_cache_dir()) / f"lm-{target.name}"
    work.mkdir(parents=True, exist_ok=True)
    scores_file = work / "scores.json"
    scores: dict[str, Any] = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    bundles: dict[tuple[str, str, str], Path] = {}
    skipped: list[str] = []
    for model in request.models:
        family = find_family(model)
        if family.variant is None:
            raise UsageError(f"--model {model}: not a language model; --budget-first-token-ms / --budget-tokens-per-s "
                             "select generation bundles")
        for fmt, precision in sorted(pairs, key=lambda p: p[1] != "fp32"):  # fp32 first: the variants need it
            out = work / f"{model.replace(':', '_').replace('/', '_')}-{fmt}-{precision}"
            if not (out / "manifest.json").is_file():
                say(f"exporting {model} {fmt} {precision}")
                try:
                    export_bundle(ExportRequest(out=out, model=ModelRequest(model), target=target.name,
                                                target_file=request.target_file,
                                                output=OutputConfig(format=fmt, precision=precision),
                                                measure=MeasureConfig(runs=0)), say)
                except Exception as exc:  # a variant below --min-agreement, a format the model has no form for
                    skipped.append(f"{model} {fmt} {precision}: {one_line(exc)}")
                    continue
            bundles[(model, fmt, precision)] = out
    if not bundles:
        raise UsageError("no candidate could be exported: " + "; ".join(skipped))
    speeds = _speeds(bundles, target, request, say)
    candidates = []
    for key, out in bundles.items():
        if key not in speeds:
            skipped.append(f"{' '.join(key)}: no latency for {target.name}")
            continue
        fp32 = bundles.get((key[0], key[1], "fp32"), out)
        say(f"measuring the task score of {' '.join(key)}")
        accuracy, source = _accuracy(out, fp32, scores)
        first, rate, speed_source = speeds[key]
        candidates.append(LmCandidate(key[0], key[1], key[2], first, rate, speed_source, accuracy, source, str(out)))
    atomic_write_text(scores_file, json.dumps(scores, indent=1) + "\n")
    fitting = [c for c in candidates if _fits(request, c)]
    if not fitting:
        from edgekit.search.evolution import NoFeasibleCandidate

        fastest = min(candidates, key=lambda c: (c.first_token_ms, -c.tokens_per_s))
        raise NoFeasibleCandidate(f"no candidate meets the budget: the fastest first token is {fastest.label()} at "
                                  f"{fastest.first_token_ms:.3f} ms with {fastest.tokens_per_s:.0f} tokens/s "
                                  f"({fastest.speed_source})", fastest)
    best = max(fitting, key=lambda c: (c.accuracy, c.tokens_per_s))
    return LmSelection(best, tuple(sorted(candidates, key=lambda c: c.first_token_ms)), tuple(skipped),
                       request)


def _speeds(bundles: dict[tuple[str, str, str], Path], target, request: LmRequest,
            say: Progress) -> dict[tuple[str, str, str], tuple[float, float, str]]:
    if target.name != "host":
        found = {}
        for key, out in bundles.items():
            speed = _device_speed(out, target, key[2])
            if speed is not None:
                found[key] = speed
        return found
    import edgekit.runtimes as rt
    from edgekit.targets.measure import fixed_prompt, measure_generation_interleaved

    sessions = {key: rt.load(out, threads=1) for key, out in bundles.items()}
    say(f"timing greedy generation of {len(sessions)} candidates, interleaved")
    prompt = fixed_prompt(next(iter(sessions.values())), request.input_tokens)
    stats = measure_generation_interleaved(sessions, prompt, NEW_TOKENS, warmup=2, runs=request.runs)
    return {key: (s.first_token_ms[0], s.decode_tokens_per_s[0], "measured") for key, s in stats.items()}
