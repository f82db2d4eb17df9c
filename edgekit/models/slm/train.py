"""Train the shipped SLMs: an encoder-decoder and its equal-size decoder-only baseline, on a synthetic task.

    python -m edgekit.models.slm.train --kind both --device cpu --threads 1 --max-seconds 285

Writes ``slm_encdec.pt`` / ``slm_deconly.pt`` (fp16 state dicts + config + metadata, loadable with
``torch.load(weights_only=True)``) and prints exact match on held-out examples. Seeds are fixed
(data: edgekit.models.slm.data, init: --seed), so a rerun on the same hardware gives the same weights.

Example:
    >>> from edgekit.models.slm.train import TrainConfig
    >>> TrainConfig(steps=10).batch_size
    32
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .config import BOS_ID, BYTE_OFFSET, EOS_ID, PAD_ID, SEP_ID, SlmConfig, matched_decoder_only
from .data import HELDOUT_SEED, TRAIN_SEED, make_examples
from .model import build_model, save_checkpoint

__all__ = ["TrainConfig", "default_config", "encode_pairs", "train", "exact_match", "main"]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100_000  # the time limit usually ends training first; the cosine schedule follows both
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    train_examples: int = 100_000
    heldout_examples: int = 1000
    seed: int = 0
    max_seconds: float = 285.0
    log_every: int = 100
    task: str = "letters"


def default_config() -> SlmConfig:
    """The shipped encoder-decoder: d_model 96, 4 heads, 4 encoder + 2 decoder layers (2:1), about 1M parameters."""
    return SlmConfig.encoder_decoder(layers=6, ratio=(2, 1), d_model=96, n_heads=4, d_ff=384)


def _bytes(text: str) -> list[int]:
    return [b + BYTE_OFFSET for b in text.encode("utf-8")]


def encode_pairs(pairs, kind: str) -> dict[str, np.ndarray]:
    """Token arrays for training: enc-dec (src+eos / bos+tgt / tgt+eos) or decoder-only (bos src sep tgt eos)."""
    if kind == "encoder-decoder":
        src = [_bytes(s) + [EOS_ID] for s, _ in pairs]
        tgt = [_bytes(t) for _, t in pairs]
        S, T = max(map(len, src)), max(map(len, tgt)) + 1
        out = {k: np.full((len(pairs), n), PAD_ID, np.int64) for k, n in (("src", S), ("dec", T), ("labels", T))}
        out["labels"][:] = -100
        for i, (s, t) in enumerate(zip(src, tgt)):
            out["src"][i, : len(s)] = s
            out["dec"][i, : len(t) + 1] = [BOS_ID] + t
            out["labels"][i, : len(t) + 1] = t + [EOS_ID]
        return out
    seqs = [[BOS_ID] + _bytes(s) + [SEP_ID] for s, _ in pairs]
    tgts = [_bytes(t) + [EOS_ID] for _, t in pairs]
    L = max(len(a) + len(b) for a, b in zip(seqs, tgts))
    ids = np.full((len(pairs), L), PAD_ID, np.int64)
    labels = np.full((len(pairs), L), -100, np.int64)
    for i, (a, b) in enumerate(zip(seqs, tgts)):
        full = a + b
        ids[i, : len(full)] = full
        labels[i, len(a) - 1 : len(full) - 1] = b  # predict the target after the separator
    return {"ids": ids, "labels": labels}


def _loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if model.config.kind == "encoder-decoder":
        logits = model(batch["src"], (batch["src"] != PAD_ID).long(), batch["dec"])
    else:
        mask = (batch["ids"] != PAD_ID).long()
        logits = model(batch["ids"], mask)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=-100)


@torch.no_grad()
def greedy(model, sources: list[str], max_new_tokens: int = 12) -> list[str]:
    """Batched greedy decoding in torch (for evaluation during training)."""
    device = next(model.parameters()).device
    kind = model.config.kind
    rows = [(_bytes(s) + [EOS_ID]) if kind == "encoder-decoder" else ([BOS_ID] + _bytes(s) + [SEP_ID]) for s in sources]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        if kind == "encoder-decoder":
            ids[i, : len(r)] = torch.tensor(r)
        else:
            ids[i, width - len(r):] = torch.tensor(r)
    ids = ids.to(device)
    mask = (ids != PAD_ID).long()
    out = torch.zeros((len(rows), 0), dtype=torch.long, device=device)
    if kind == "encoder-decoder":
        cross = model.cross_kv(model.encode(ids, mask))
        tokens, past = torch.full((len(rows), 1), BOS_ID, device=device), None
        for _ in range(max_new_tokens):
            logits, past = model.decode(tokens, mask, cross, past)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            out = torch.cat((out, tokens), 1)
    else:
        past, tokens = None, ids
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        for _ in range(max_new_tokens):
            logits, past = model.step(tokens, mask, positions, past)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            out = torch.cat((out, tokens), 1)
            mask = torch.cat((mask, torch.ones_like(tokens)), 1)
            positions = positions[:, -1:] + 1
    texts = []
    for row in out.tolist():
        row = row[: row.index(EOS_ID)] if EOS_ID in row else row
        texts.append(bytes(t - BYTE_OFFSET for t in row if t >= BYTE_OFFSET).decode("utf-8", "replace"))
    return texts


def exact_match(model, pairs, batch_size: int = 250) -> float:
    hits = 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        hits += sum(p == t for p, (_, t) in zip(greedy(model, [s for s, _ in chunk]), chunk))
    return hits / len(pairs)


def train(config: SlmConfig, tc: TrainConfig, device: str, log=print, init: Path | None = None):
    """Train one model (from scratch, or on from the checkpoint ``init``); returns it and its metadata."""
    torch.manual_seed(tc.seed)
    model = build_model(config)
    history = []
    if init is not None:
        from .model import load_checkpoint

        start_from = load_checkpoint(init)
        if start_from.config != config:
            raise ValueError(f"--init {init}: its config {start_from.config} differs from {config}")
        model.load_state_dict(start_from.state_dict())
        history = list(start_from.meta.get("history", [])) or [{k: start_from.meta.get(k) for k in ("steps", "device", "train_seconds", "final_loss")} | {"train": start_from.meta.get("train")}]
    model = model.to(device)
    data = {k: torch.from_numpy(v).to(device) for k, v in encode_pairs(list(make_examples(tc.train_examples, TRAIN_SEED, tc.task)), config.kind).items()}
    heldout = list(make_examples(tc.heldout_examples, HELDOUT_SEED, tc.task))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=tc.lr, betas=(0.9, 0.98))
    gen = torch.Generator(device="cpu").manual_seed(tc.seed)
    n = next(iter(data.values())).shape[0]
    start, step, loss_value = time.time(), 0, float("nan")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    model.train()
    for step in range(1, tc.steps + 1):
        progress = min(1.0, max(step / tc.steps, (time.time() - start) / tc.max_seconds))
        lr = tc.lr * min(1.0, step / tc.warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        index = torch.randint(0, n, (tc.batch_size,), generator=gen).to(device)
        batch = {k: v[index] for k, v in data.items()}
        with autocast:
            loss = _loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % tc.log_every == 0 or step == tc.steps:
            loss_value = float(loss.detach())
            log(f"{config.kind} step {step} loss {loss_value:.4f} lr {lr:.2e} {time.time() - start:.0f}s")
        if time.time() - start > tc.max_seconds:
            log(f"{config.kind}: stopping at step {step} (max_seconds {tc.max_seconds})")
            break
    model.eval()
    em = exact_match(model, heldout)
    stage = {"steps": step, "device": device, "train_seconds": round(time.time() - start, 1), "final_loss": loss_value,
             "train": asdict(tc), "torch": str(torch.__version__)}
    meta = {"task": f"{tc.task} (edgekit.models.slm.data)", "steps": sum(h["steps"] for h in history) + step,
            "final_loss": loss_value, "heldout_exact_match": em, "heldout_examples": len(heldout),
            "train_seconds": round(sum(h["train_seconds"] for h in history) + stage["train_seconds"], 1),
            "device": "+".join([*(h["device"] for h in history), device]), "parameters": config.parameter_count(),
            "history": [*history, stage]}
    log(f"{config.kind}: held-out exact match {em:.3f} ({len(heldout)} examples), {config.parameter_count()} parameters")
    return model.cpu(), meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("encdec", "deconly", "both"), default="both")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--train-examples", type=int, default=TrainConfig.train_examples)
    parser.add_argument("--heldout-examples", type=int, default=TrainConfig.heldout_examples)
    parser.add_argument("--max-seconds", type=float, default=TrainConfig.max_seconds)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=("letters", "records"), default=TrainConfig.task)
    parser.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    parser.add_argument("--log-every", type=int, default=TrainConfig.log_every)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--init", type=Path, default=None, help="continue from a checkpoint (same config); "
                        "with --kind both, a directory holding slm_encdec.pt / slm_deconly.pt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    args = parser.parse_args(argv)
    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, train_examples=args.train_examples,
                     heldout_examples=args.heldout_examples, seed=args.seed, max_seconds=args.max_seconds,
                     warmup=args.warmup, log_every=args.log_every, task=args.task)
    if args.threads:
        torch.set_num_threads(args.threads)
    encdec = default_config()
    configs = {"encdec": encdec, "deconly": matched_decoder_only(encdec)}
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, config in configs.items():
        if args.kind not in (name, "both"):
            continue
        init = args.init / f"slm_{name}.pt" if args.init is not None and args.init.is_dir() else args.init
        model, meta = train(config, tc, args.device, init=init)
        save_checkpoint(model, args.out / f"slm_{name}.pt", **meta)
        results[name] = meta
    print(json.dumps({k: {m: v[m] for m in ("steps", "final_loss", "heldout_exact_match", "parameters", "train_seconds")}
                      for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
