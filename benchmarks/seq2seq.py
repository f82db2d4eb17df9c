"""Encoder-decoder generation speed: edgekit's runtime vs Hugging Face and Optimum, and enc-dec vs decoder-only.

(a) One tiny T5 config, the same inputs, one thread everywhere (torch.set_num_threads(1), onnxruntime
    intra-op 1): first-token latency and decode tokens/s of edgekit's numpy loop over onnxruntime,
    Hugging Face ``generate()`` in torch eager, and Optimum's ORTModelForSeq2SeqLM. Optimum needs
    transformers < 4.58, so it runs in its own virtual environment (--optimum-python, default
    /tmp/optimum-venv/bin/python: python3 -m venv /tmp/optimum-venv; pip install torch==2.13.0; pip install
    "optimum-onnx[onnxruntime]") as a subprocess of this script on the same saved model and inputs.
(b) edgekit's encoder-decoder SLM vs its equal-size decoder-only baseline (the shipped checkpoints),
    inputs of 64 to 1024 tokens, 32 output tokens: first-token latency, decode throughput, ratios.

(c) ``--size t5-small`` / ``--size flan-t5-base``: a random-init T5 of that shape (re-initialised as in (a)), or
    ``--model DIR``: the T5-small-shape model edgekit/tools/train_t5_copy.py trains on a copy-heavy correction
    task, timed on that task's held-out lines; edgekit fp32 / int8 / fp16 (the export's decoder variants) /
    fp32 and int8 + input drafting (accepted rate, speed-up over plain greedy, tokens identical) vs Optimum fp32 vs
    HF eager at 16 and 128 input tokens, token agreement with HF eager per row, and what one decoder call
    verifying 9 tokens costs against 1 (the bound on drafting's speed-up). Written to seq2seq_SIZE.json.

Every generation is forced to its full length (min_new_tokens = max_new_tokens) so all systems do the
same work. Medians over warmed-up runs, systems interleaved run by run.

Example:
    python benchmarks/seq2seq.py --runs 7
    python benchmarks/seq2seq.py --size t5-small --runs 3
    python benchmarks/seq2seq.py --model /tmp/edgekit-t5-copy --runs 3   # after train_t5_copy.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "seq2seq.json"
T5_CONFIG = dict(vocab_size=1024, d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2, num_heads=4,
                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
NEW_TOKENS = 32
OPTIMUM = "Optimum ORTModelForSeq2SeqLM fp32"


def _stats(firsts: list[float], totals: list[float], n: int) -> dict:
    first = statistics.median(firsts)
    decode = [(n - 1) / (t - f) for f, t in zip(firsts, totals)]
    return {"first_token_ms": round(first * 1000, 3), "decode_tok_s": round(statistics.median(decode), 1),
            "total_ms": round(statistics.median(totals) * 1000, 3), "runs": len(firsts)}


# ---------------------------------------------------------------------------------------- timers
def _time_edgekit(lm, ids: list[int], n: int) -> tuple[float, float, list[int]]:
    first: list[float] = []
    start = time.perf_counter()
    out = lm.generate([ids], max_new_tokens=n, min_new_tokens=n,
                      on_token=lambda t: first.append(time.perf_counter()) if not first else None)
    return first[0] - start, time.perf_counter() - start, out[0].tolist()


def _hf_streamer():
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:  # the first call carries the prompt, the second the first new token
            self.calls += 1
            if self.calls == 2:
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    return FirstToken()


def _time_hf(model, ids: list[int], n: int) -> tuple[float, float, list[int]]:
    import torch

    streamer = _hf_streamer()
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, streamer=streamer)
    return streamer.first - start, time.perf_counter() - start, out[0].tolist()


def _interleaved(timers: dict, inputs: list[list[int]], runs: int) -> tuple[dict, dict]:
    """Every timer on every input, ``runs`` times, rotating who goes first; stats and first-run tokens per timer."""
    samples = {name: ([], []) for name in timers}
    tokens: dict[str, list] = {name: [] for name in timers}
    order = list(timers)
    for run in range(runs):
        for ids in inputs:
            for name in order[run % len(order):] + order[: run % len(order)]:
                f, t, out = timers[name](ids)
                samples[name][0].append(f)
                samples[name][1].append(t)
                if run == 0:
                    tokens[name].append(out)
    return {name: _stats(*samples[name], NEW_TOKENS) for name in timers}, tokens


# ------------------------------------------------------------------------------ optimum worker
def optimum_worker(model_dir: str, inputs_json: str, runs: int, warmup: int) -> None:
    """Runs inside the Optimum venv: prints one JSON line with timings and tokens."""
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    torch.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    model = ORTModelForSeq2SeqLM.from_pretrained(model_dir, export=True, session_options=options,
                                                 provider="CPUExecutionProvider")
    inputs = json.loads(inputs_json)
    for ids in inputs[:warmup]:
        _time_hf(model, ids, NEW_TOKENS)
    firsts, totals, tokens = [], [], []
    for _ in range(runs):
        for ids in inputs:
            f, t, out = _time_hf(model, ids, NEW_TOKENS)
            firsts.append(f)
            totals.append(t)
            tokens.append(out)
    import transformers
    import optimum

    print(json.dumps({"firsts": firsts, "totals": totals, "tokens": tokens[: len(inputs)],
                      "versions": {"transformers": transformers.__version__, "optimum": getattr(optimum, "__version__", "?"),
                                   "onnxruntime": ort.__version__}}))


def optimum_server(model_dir: str) -> None:
    """Runs inside the Optimum venv: one JSON list of ids per stdin line -> one line {first, total, tokens}, timed
    here (so the pipe is not timed); lets part (c) interleave Optimum with the in-process systems run by run."""
    import onnxruntime as ort
    import torch
    import transformers
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    torch.set_num_threads(1)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    model = ORTModelForSeq2SeqLM.from_pretrained(model_dir, export=True, session_options=options,
                                                 provider="CPUExecutionProvider")
    versions = {"transformers": transformers.__version__, "onnxruntime": ort.__version__}
    print(json.dumps({"ready": versions}), flush=True)
    for line in sys.stdin:
        first, total, tokens = _time_hf(model, json.loads(line), NEW_TOKENS)
        print(json.dumps({"first": first, "total": total, "tokens": tokens}), flush=True)


class _OptimumProcess:
    """Optimum's generate in its own venv as a timer: ``timer(ids)`` -> (first-token s, total s, tokens)."""

    def __init__(self, python: str, model_dir: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
        self.proc = subprocess.Popen([python, __file__, "--optimum-serve", str(model_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"the Optimum server ({python}) exited before it was ready")
        self.versions = json.loads(ready)["ready"]

    def __call__(self, ids: list[int]) -> tuple[float, float, list[int]]:
        self.proc.stdin.write(json.dumps(ids) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        return out["first"], out["total"], out["tokens"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _run_optimum(python: str, model_dir: Path, inputs, runs: int, warmup: int) -> dict:
    if not Path(python).is_file():
        return {"skipped": f"{python} not found (create the Optimum venv: see this file's docstring)"}
    cmd = [python, __file__, "--optimum-worker", str(model_dir), json.dumps(inputs), "--runs", str(runs), "--warmup", str(warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"skipped": f"the Optimum worker failed: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ sizes of part (c)
T5_SIZES = {  # T5-small and flan-T5-base shapes (the vocabulary of both: 32128)
    "t5-small": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
                     decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
    "flan-t5-base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12,
                         num_heads=12, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                         decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
}
# Random weights of part (c): T5-small's as in the issue's runs (std 0.3, diverse greedy tokens); flan-T5-base keeps
# transformers' own init, because std 0.3 through 12 gated-GELU layers grows activations until the fp32 export's
# parity check fails (encoder cross_value_5: 0.0079 off) and nothing is measured.
INIT_STD: dict[str, float | None] = {"t5-small": 0.3, "flan-t5-base": None}
# ------------------------------------------------------------------------------------- part (a)
def part_a(args) -> dict:
    import numpy as np
    import torch
    import transformers

    import edgekit.runtimes as rt
    from edgekit.models.registry import ModelRequest
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="edgekit-seq2seq-"))
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**T5_CONFIG)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # random init emits one token forever otherwise
    model.save_pretrained(work / "t5")
    export_bundle(ExportRequest(out=work / "bundle", model=ModelRequest(f"hf:{work / 't5'}"), measure=MeasureConfig(runs=0)))
    lm = rt.load(work / "bundle", threads=1)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(2, T5_CONFIG["vocab_size"], size=int(n)).tolist() for n in rng.integers(16, 33, size=args.inputs)]
    timers = {"edgekit (onnxruntime)": lambda ids: _time_edgekit(lm, ids, NEW_TOKENS),
              "HF generate (torch eager)": lambda ids: _time_hf(model, ids, NEW_TOKENS)}
    for ids in inputs[: args.warmup]:
        for timer in timers.values():
            timer(ids)
    rows, tokens = _interleaved(timers, inputs, args.runs)
    ref = tokens["HF generate (torch eager)"]
    rows["edgekit (onnxruntime)"]["tokens_equal_hf"] = tokens["edgekit (onnxruntime)"] == ref
    optimum = _run_optimum(args.optimum_python, work / "t5", inputs, args.runs, args.warmup) if args.optimum else {"skipped": "--no-optimum"}
    if "skipped" in optimum:
        rows["Optimum ORTModelForSeq2SeqLM"] = {"skipped": optimum["skipped"]}
    else:
        rows["Optimum ORTModelForSeq2SeqLM"] = {**_stats(optimum["firsts"], optimum["totals"], NEW_TOKENS),
                                               "tokens_equal_hf": optimum["tokens"] == ref, "versions": optimum["versions"],
                                               "note": "separate process (transformers < 4.58)"}
    return {"config": T5_CONFIG, "inputs": len(inputs), "new_tokens": NEW_TOKENS, "threads": 1, "rows": rows}


# ------------------------------------------------------------------------------------- part (b)
def _size_configs():
    from edgekit.models.slm.config import SlmConfig, matched_decoder_only
    from edgekit.models.slm.train import default_config

    bigger = SlmConfig.encoder_decoder(layers=12, ratio=(2, 1), d_model=256, n_heads=8, d_ff=1024)
    return {"shipped (~1M)": (default_config(), matched_decoder_only(default_config())),
            "~14M": (bigger, matched_decoder_only(bigger))}


def _slm_bundles(work: Path, size: str, configs) -> tuple[dict[str, Path], dict[str, int]]:
    """Bundles of one size: the shipped checkpoints at the shipped size (random weights otherwise)."""
    from edgekit.models.registry import ModelRequest
    from edgekit.models.slm.export import BUILTIN_CHECKPOINTS
    from edgekit.models.slm.model import build_model, load_checkpoint, save_checkpoint
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle

    bundles, params = {}, {}
    for ref, config in zip(("slm-encdec", "slm-deconly"), configs):
        path = BUILTIN_CHECKPOINTS[ref]
        source = ref
        if not (path.is_file() and load_checkpoint(path).config == config):  # timing does not depend on weights
            save_checkpoint(build_model(config), work / f"{ref}.pt")
            source = f"slm:{work / ref}.pt"
        bundles[ref] = work / f"{size}-{ref}".replace(" ", "_").replace("(", "").replace(")", "").replace("~", "")
        params[ref] = config.parameter_count()
        export_bundle(ExportRequest(out=bundles[ref], model=ModelRequest(source), measure=MeasureConfig(runs=0)))
    return bundles, params


def part_b(args) -> dict:
    import numpy as np

    import edgekit.runtimes as rt

    work = Path(tempfile.mkdtemp(prefix="edgekit-slm-"))
    sizes = {}
    for size, configs in _size_configs().items():
        bundles, params = _slm_bundles(work, size, configs)
        lms = {name: rt.load(path, threads=1) for name, path in bundles.items()}
        rng = np.random.default_rng(0)
        table = []
        for length in args.lengths:
            ids = (rng.integers(0, 256, size=length) + 4).tolist()
            prompts = {"slm-encdec": ids[:-1] + [2], "slm-deconly": [1] + ids[:-2] + [3]}  # same length, framed per kind
            for name, lm in lms.items():
                for _ in range(args.warmup):
                    _time_edgekit(lm, prompts[name], NEW_TOKENS)
            samples = {name: ([], []) for name in lms}
            order = list(lms)
            for run in range(args.runs):
                for name in order[run % 2:] + order[: run % 2]:
                    f, t, _ = _time_edgekit(lms[name], prompts[name], NEW_TOKENS)
                    samples[name][0].append(f)
                    samples[name][1].append(t)
            enc, dec = _stats(*samples["slm-encdec"], NEW_TOKENS), _stats(*samples["slm-deconly"], NEW_TOKENS)
            table.append({
                "input_tokens": length, "encdec": enc, "deconly": dec,
                "first_token_change_pct": round((enc["first_token_ms"] / dec["first_token_ms"] - 1) * 100, 1),
                "decode_throughput_ratio": round(enc["decode_tok_s"] / dec["decode_tok_s"], 2),
                "end_to_end_throughput_ratio": round(dec["total_ms"] / enc["total_ms"], 2),
            })
        layers = {name: (c.encoder_layers, c.decoder_layers, c.d_model, c.d_ff) for name, c in zip(lms, configs)}
        sizes[size] = {"parameters": params, "layers_enc_dec_dmodel_dff": layers, "rows": table}
    return {"new_tokens": NEW_TOKENS, "threads": 1, "batch": 1, "sizes": sizes}


# ------------------------------------------------------------------------------------- part (c)
def _time_edgekit_draft(lm, ids: list[int], n: int, stats: list) -> tuple[float, float, list[int]]:
    """``_time_edgekit`` with input-guided drafting; each call's DraftStats is appended to ``stats``."""
    first: list[float] = []
    start = time.perf_counter()
    out = lm.generate([ids], max_new_tokens=n, min_new_tokens=n, draft="input",
                      on_token=lambda t: first.append(time.perf_counter()) if not first else None)
    end = time.perf_counter()
    stats.append(lm.last_draft_stats)
    return first[0] - start, end - start, out[0].tolist()


def _draft_summary(stats: list, rows: dict, tokens: dict, precision: str) -> dict:
    """Drafted / accepted tokens over every timed call, and the speed-up over the same session's plain greedy."""
    plain, drafted = rows[f"edgekit {precision}"], rows[f"edgekit {precision} + draft"]
    total = {key: sum(getattr(s, key) for s in stats) for key in ("drafted", "accepted", "decoder_calls", "new_tokens")}
    return {**total, "accept_rate": round(total["accepted"] / max(1, total["drafted"]), 4),
            "tokens_identical_to_plain_greedy": tokens[f"edgekit {precision} + draft"] == tokens[f"edgekit {precision}"],
            "speedup_total_time": round(plain["total_ms"] / drafted["total_ms"], 2)}


def _c_model(args):
    """Part (c)'s model: ``--model DIR`` (train_t5_copy.py's output: config.json + fp16 model.safetensors, loaded
    in fp32) or a random init of ``--size``'s shape. Returns (config, model, training log or None)."""
    import torch
    import transformers

    if args.model is None:
        config = T5_SIZES[args.size]
        torch.manual_seed(0)
        model = transformers.T5ForConditionalGeneration(transformers.T5Config(**config)).eval()
        std = INIT_STD[args.size]
        if std is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0, std)
        return config, model, None
    from safetensors.torch import load_file

    config = json.loads((args.model / "config.json").read_text())
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**config))
    model.load_state_dict({k: v.float() for k, v in load_file(str(args.model / "model.safetensors")).items()})
    log = args.model / "train_log.json"
    trained = json.loads(log.read_text()) if log.is_file() else {"seed": 0}
    return config, model.eval(), {"dir": str(args.model), **{k: v for k, v in trained.items() if k != "loss"}}


def _agreement(tokens: list[list[int]], ref: list[list[int]]) -> float:
    same = sum(a == b for x, y in zip(tokens, ref) for a, b in zip(x, y))
    return round(same / max(1, sum(max(len(x), len(y)) for x, y in zip(tokens, ref))), 4)


def _block_cost(bundle: Path, past: int = 32, block: int = 9, runs: int = 20) -> dict:
    """ms of one decoder call with 1 and with ``block`` new tokens after ``past`` cached: what a verified draft costs."""
    import numpy as np

    from edgekit.models.slm.quantize import _step_feeds
    from edgekit.runtimes import load_file
    from edgekit.runtimes.bundle import read_bundle

    b = read_bundle(bundle)
    session = load_file(b.file("decoder"), threads=1)
    one = _step_feeds(b.manifest, past=past, source=16)
    many = {**one, "decoder_input_ids": np.full((1, block), 5, np.int64)}
    times = {1: [], block: []}
    for _ in range(3):
        session.run(one), session.run(many)
    for _ in range(runs):
        for k, feeds in ((1, one), (block, many)):
            t = time.perf_counter()
            session.run(feeds)
            times[k].append((time.perf_counter() - t) * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"past": past, "ms_1_token": round(ms[1], 3), f"ms_{block}_tokens": round(ms[block], 3),
            "ratio": round(ms[block] / ms[1], 2)}


def _task_scores(lms: dict, seed: int, count: int, length: int = 64) -> dict:
    """On ``count`` held-out copy-task lines of ``length`` source tokens, greedy to eos: each precision's exact
    match with the clean line and its token agreement with fp32 (the int8 goal's measure, on task inputs)."""
    from edgekit.tools.train_t5_copy import CopyTask, decode, heldout

    pairs = heldout(CopyTask(seed=seed), count, length)
    outputs = {p: [lm.generate([ids], max_new_tokens=length + 8)[0].tolist() for ids, _ in pairs] for p, lm in lms.items()}
    return {"source_tokens": length, "examples": count, **{p: {
        "exact_match": round(sum(decode(o) == clean for o, (_, clean) in zip(out, pairs)) / count, 4),
        "token_agreement_fp32": _agreement(out, outputs["fp32"])} for p, out in outputs.items()}}


def part_c(args) -> dict:
    """T5-small / flan-T5-base size, random init re-initialised as part (a) or a trained model (``--model``):
    edgekit fp32 / int8 / fp16 / fp32 + draft / int8 + draft vs Optimum fp32 vs HF eager at 16 and 128 input
    tokens; drafting's accepted rate and speed-up over the same session's plain greedy."""
    import numpy as np
    import torch

    import edgekit.runtimes as rt
    from edgekit.models.registry import ModelRequest
    from edgekit.models.slm.quantize import export_variant
    from edgekit.pipeline import ExportRequest, MeasureConfig, export_bundle
    from edgekit.tools.train_t5_copy import CopyTask, heldout

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix=f"edgekit-{args.size}-"))
    config, model, trained = _c_model(args)
    model.save_pretrained(work / "t5")
    export_bundle(ExportRequest(out=work / "fp32", model=ModelRequest(f"hf:{work / 't5'}"), measure=MeasureConfig(runs=0)))
    variants = {}
    for precision in ("int8", "fp16"):
        manifest = export_variant(work / "fp32", work / precision, precision, min_agreement=0.0, threads=1, force=False,
                                  say=lambda m: None)
        variants[precision] = manifest.validation["precision"]
    lms = {p: rt.load(work / p, threads=1) for p in ("fp32", "int8", "fp16")}
    timers = {f"edgekit {p}": (lambda lm: lambda ids: _time_edgekit(lm, ids, NEW_TOKENS))(lm) for p, lm in lms.items()}
    drafts: dict[str, list] = {"fp32": [], "int8": []}
    for p in drafts:
        timers[f"edgekit {p} + draft"] = (lambda p: lambda ids: _time_edgekit_draft(lms[p], ids, NEW_TOKENS, drafts[p]))(p)
    timers["HF generate (torch eager)"] = lambda ids: _time_hf(model, ids, NEW_TOKENS)
    optimum = None
    if args.optimum and Path(args.optimum_python).is_file():
        optimum = _OptimumProcess(args.optimum_python, work / "t5")
        timers[OPTIMUM] = optimum
    rng = np.random.default_rng(0)
    table = []
    for length in args.lengths_c:
        inputs = ([ids for ids, _ in heldout(CopyTask(seed=trained["seed"]), args.inputs_c, length)] if trained else
                  [rng.integers(2, config["vocab_size"], size=length).tolist() for _ in range(args.inputs_c)])
        for timer in timers.values():
            timer(inputs[0])
        for stats in drafts.values():
            stats.clear()
        rows, tokens = _interleaved(timers, inputs, args.runs)
        ref = tokens["HF generate (torch eager)"]
        for name in timers:
            rows[name]["token_agreement_hf"] = _agreement(tokens[name], ref)
        if optimum is None:
            rows[OPTIMUM] = {"skipped": "--no-optimum" if not args.optimum else f"{args.optimum_python} not found"}
        else:
            rows[OPTIMUM].update(versions=optimum.versions, note="its own venv and process, interleaved run by run")
        table.append({"input_tokens": length, "rows": rows,
                      "draft": {p: _draft_summary(stats, rows, tokens, p) for p, stats in drafts.items()}})
    if optimum is not None:
        optimum.close()
    block = {p: _block_cost(work / p) for p in ("fp32", "int8")}
    task = _task_scores(lms, trained["seed"], args.task_examples) if trained else None
    return {"task_scores": task, "size": args.size, "config": config, "model": trained or (f"random init (normal, std {INIT_STD[args.size]}), seed 0" if INIT_STD[args.size] else
                                  "random init (transformers' T5 init), seed 0"),
            "inputs": "held-out copy-task lines (edgekit/tools/train_t5_copy.py)" if trained else "random token ids",
            "parameters": sum(p.numel() for p in model.parameters()),
            "inputs_per_length": args.inputs_c, "new_tokens": NEW_TOKENS, "threads": 1, "variants": variants,
            "table": table, "verify_block_cost": block}


def _print_c(c: dict) -> None:
    print(f"\n(c) {c['size']} size (d_model {c['config']['d_model']}, {c['config']['num_layers']}+"
          f"{c['config']['num_decoder_layers']} layers, vocab {c['config']['vocab_size']}, {c['parameters'] / 1e6:.1f} M "
          f"parameters, {'trained: ' + c['model']['dir'] if isinstance(c['model'], dict) else 'random init'}), "
          f"inputs: {c['inputs']}, {c['new_tokens']} new tokens forced, greedy, 1 thread; shared noisy host: medians")
    for row in c["table"]:
        rows = row["rows"]
        base = rows.get(OPTIMUM, {})
        print(f"{row['input_tokens']} input tokens")
        print(f"  {'system':36} {'first token ms':>15} {'decode tok/s':>13} {'x Optimum':>10}  token agreement with HF")
        for name, r in rows.items():
            if "skipped" in r:
                print(f"  {name:36} skipped: {r['skipped']}")
                continue
            ratio = f"{r['decode_tok_s'] / base['decode_tok_s']:10.2f}" if "decode_tok_s" in base else f"{'-':>10}"
            print(f"  {name:36} {r['first_token_ms']:15.2f} {r['decode_tok_s']:13.1f} {ratio}  {r['token_agreement_hf']:.4f}")
        for p, d in row["draft"].items():
            print(f"  {p} + draft: {d['accepted']} of {d['drafted']} drafted tokens accepted ({100 * d['accept_rate']:.1f}%), "
                  f"{d['speedup_total_time']:.2f}x plain greedy, tokens identical: {d['tokens_identical_to_plain_greedy']}")
    for p, v in c["variants"].items():
        print(f"{p} vs fp32 (export's own check): token agreement {100 * v['token_agreement']:.2f}% on {v['on']}")
    for p, b in c["verify_block_cost"].items():
        print(f"{p} decoder call after {b['past']} cached: 1 token {b['ms_1_token']:.2f} ms, 9 tokens "
              f"{b['ms_9_tokens']:.2f} ms ({b['ratio']:.2f}x): a draft of 8 fully accepted makes 9 tokens for that")
    task = c.get("task_scores")
    if task:
        print(f"task: {task['examples']} held-out lines of {task['source_tokens']} source tokens, greedy to eos")
        for p in ("fp32", "int8", "fp16"):
            print(f"  {p}: exact match {100 * task[p]['exact_match']:.1f}%, token agreement with fp32 "
                  f"{100 * task[p]['token_agreement_fp32']:.2f}%")


def _print_a(a: dict) -> None:
    print(f"\n(a) tiny T5 (d_model {a['config']['d_model']}, {a['config']['num_layers']}+{a['config']['num_decoder_layers']} layers, "
          f"vocab {a['config']['vocab_size']}), {a['inputs']} inputs, {a['new_tokens']} new tokens, greedy, 1 thread")
    print(f"{'system':32} {'first token ms':>15} {'decode tok/s':>13} {'x HF':>6}  tokens = HF")
    hf = a["rows"]["HF generate (torch eager)"]["decode_tok_s"]
    for name, row in a["rows"].items():
        if "skipped" in row:
            print(f"{name:32} skipped: {row['skipped']}")
            continue
        same = row.get("tokens_equal_hf", "(reference)")
        print(f"{name:32} {row['first_token_ms']:15.2f} {row['decode_tok_s']:13.1f} {row['decode_tok_s'] / hf:6.2f}  {same}")


def _print_b(b: dict) -> None:
    for size, part in b["sizes"].items():
        print(f"\n(b) edgekit enc-dec vs decoder-only, {size}: parameters {part['parameters']}, "
              f"(enc, dec, d_model, d_ff) {part['layers_enc_dec_dmodel_dff']}, {b['new_tokens']} new tokens, batch 1, 1 thread")
        print(f"{'input':>6} {'enc-dec first ms':>17} {'dec-only first ms':>18} {'first-token':>12} {'enc-dec tok/s':>14} "
              f"{'dec-only tok/s':>15} {'decode x':>9} {'end-to-end x':>13}")
        for row in part["rows"]:
            print(f"{row['input_tokens']:6d} {row['encdec']['first_token_ms']:17.2f} {row['deconly']['first_token_ms']:18.2f} "
                  f"{row['first_token_change_pct']:+11.1f}% {row['encdec']['decode_tok_s']:14.1f} {row['deconly']['decode_tok_s']:15.1f} "
                  f"{row['decode_throughput_ratio']:9.2f} {row['end_to_end_throughput_ratio']:13.2f}")
    print("paper (Return of the Encoder): enc-dec -47% first-token latency, 4.7x throughput vs decoder-only on edge devices")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inputs", type=int, default=8, help="inputs for part (a)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--parts", default="ab", help="a, b and/or c (c: --size)")
    parser.add_argument("--size", choices=sorted(T5_SIZES), default=None, help="part (c) at this size (implies --parts c)")
    parser.add_argument("--lengths-c", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--inputs-c", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None,
                        help="part (c) on this trained model (edgekit/tools/train_t5_copy.py --out DIR) and its task's inputs")
    parser.add_argument("--task-examples", type=int, default=200, help="with --model: held-out lines scored per precision")
    parser.add_argument("--optimum-python", default="/tmp/optimum-venv/bin/python")
    parser.add_argument("--no-optimum", dest="optimum", action="store_false")
    parser.add_argument("--optimum-serve", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--optimum-worker", nargs=2, metavar=("MODEL_DIR", "INPUTS_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.model is not None and args.size is None:
        args.size = "t5-small"
    if args.optimum_serve:
        optimum_server(args.optimum_serve)
        return 0
    if args.optimum_worker:
        optimum_worker(*args.optimum_worker, runs=args.runs, warmup=args.warmup)
        return 0
    import torch

    torch.set_num_threads(1)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "torch": torch.__version__}, "warmup": args.warmup, "runs": args.runs}
    if "a" in args.parts and args.size is None:
        result["a"] = part_a(args)
        _print_a(result["a"])
    if "b" in args.parts and args.size is None:
        result["b"] = part_b(args)
        _print_b(result["b"])
    if args.size is not None:
        result["c"] = part_c(args)
        _print_c(result["c"])
    if args.size is not None and args.out == RESULTS:
        args.out = RESULTS.with_name(f"seq2seq_{args.size}.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
