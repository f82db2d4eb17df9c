"""Encoder-decoder generation speed: edgekit's runtime vs Hugging Face and Optimum, and enc-dec vs decoder-only.

(a) One tiny T5 config, the same inputs, one thread everywhere (torch.set_num_threads(1), onnxruntime
    intra-op 1): first-token latency and decode tokens/s of edgekit's numpy loop over onnxruntime,
    Hugging Face ``generate()`` in torch eager, and Optimum's ORTModelForSeq2SeqLM. Optimum needs
    transformers < 4.58, so it runs in its own virtual environment (--optimum-python, default
    /work/venv-optimum/bin/python) as a subprocess of this script on the same saved model and inputs.
(b) edgekit's encoder-decoder SLM vs its equal-size decoder-only baseline (the shipped checkpoints),
    inputs of 64 to 1024 tokens, 32 output tokens: first-token latency, decode throughput, ratios.

Every generation is forced to its full length (min_new_tokens = max_new_tokens) so all systems do the
same work. Medians over warmed-up runs, systems interleaved run by run.

Example:
    python benchmarks/seq2seq.py --runs 7
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
    samples = {name: ([], []) for name in timers}
    tokens = {name: [] for name in timers}
    order = list(timers)
    for run in range(args.runs):
        for ids in inputs:
            for name in order[run % 2:] + order[: run % 2]:  # alternate who goes first
                f, t, out = timers[name](ids)
                samples[name][0].append(f)
                samples[name][1].append(t)
                if run == 0:
                    tokens[name].append(out)
    rows = {name: _stats(*samples[name], NEW_TOKENS) for name in timers}
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
    parser.add_argument("--parts", default="ab")
    parser.add_argument("--optimum-python", default="/work/venv-optimum/bin/python")
    parser.add_argument("--no-optimum", dest="optimum", action="store_false")
    parser.add_argument("--optimum-worker", nargs=2, metavar=("MODEL_DIR", "INPUTS_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.optimum_worker:
        optimum_worker(*args.optimum_worker, runs=args.runs, warmup=args.warmup)
        return 0
    import torch

    torch.set_num_threads(1)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                          "torch": torch.__version__}, "warmup": args.warmup, "runs": args.runs}
    if "a" in args.parts:
        result["a"] = part_a(args)
        _print_a(result["a"])
    if "b" in args.parts:
        result["b"] = part_b(args)
        _print_b(result["b"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
