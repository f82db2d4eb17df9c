"""Train a T5-small-shape model on a copy-heavy correction task (the draft-decoding benchmark's model).

    python edgekit/tools/train_t5_copy.py --out /tmp/edgekit-t5-copy --steps 6000 --minutes 7.3 --seed 0 --induction-init  # one GPU

The task: a line of words from a seeded pseudo-word lexicon with 1-3 character edits (substitute, delete,
insert, swap) -> the clean line. The output mostly copies the input, so input-guided drafting applies.
Tokens are bytes (ByT5's layout: 0 pad, 1 eos, 2 unk, byte b -> b + 3; vocabulary 260); the model keeps
T5-small's shape (d_model 512, d_ff 2048, 8 heads, 6+6 layers) so a decode step costs what T5-small's does,
the 32k-entry LM head aside. It writes ``config.json`` (the T5Config arguments), ``model.safetensors``
(fp16) and ``train_log.json`` (command, seed, steps, loss, held-out exact match). The task half of this file
is numpy only (the benchmark draws its inputs from it); torch and transformers are imported by ``train``.
It runs as a plain script too (``python edgekit/tools/train_t5_copy.py``) on a machine with torch alone.

Example:
    >>> task = CopyTask(seed=0)
    >>> source, target = task.example(np.random.default_rng(1), 40)
    >>> len(target) <= 40 and decode(encode(target)) == target
    True
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["T5_COPY_CONFIG", "CopyTask", "encode", "decode", "heldout", "previous_token_init", "train", "main"]

T5_COPY_CONFIG = dict(vocab_size=260, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                      num_heads=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
_OFFSET = 3  # ByT5: pad 0, eos 1, unk 2, then bytes
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
HELDOUT_SEED = 10_000  # training batches use seeds below this


def encode(text: str, eos: bool = True) -> list[int]:
    """Byte ids of ``text`` (+3), then eos (1). ``encode("ab")`` -> ``[100, 101, 1]``."""
    return [b + _OFFSET for b in text.encode("utf-8")] + ([1] if eos else [])


def decode(ids) -> str:
    """Text of byte ids; pad, eos and unk (ids < 3) are dropped."""
    return bytes(int(i) - _OFFSET for i in ids if _OFFSET <= int(i) < 256 + _OFFSET).decode("utf-8", "replace")


@dataclass(frozen=True)
class CopyTask:
    """Lines of lexicon words with a few character edits -> the clean line, seeded."""

    seed: int = 0
    words: int = 400
    edits: tuple[int, int] = (1, 3)
    lexicon: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        seen: dict[str, None] = {}
        while len(seen) < self.words:
            seen["".join(rng.choice(list(_LETTERS), size=int(rng.integers(2, 10))))] = None
        object.__setattr__(self, "lexicon", tuple(seen))

    def clean(self, rng: np.random.Generator, chars: int) -> str:
        """Lexicon words joined by spaces, at most ``chars`` characters (at least one word)."""
        line = self.lexicon[int(rng.integers(len(self.lexicon)))]
        while True:
            word = self.lexicon[int(rng.integers(len(self.lexicon)))]
            if len(line) + 1 + len(word) > chars:
                return line
            line += " " + word

    def corrupt(self, rng: np.random.Generator, line: str) -> str:
        """``line`` with 1-3 letter edits (substitute, delete, insert, swap neighbours) at letter positions."""
        chars = list(line)
        for _ in range(int(rng.integers(self.edits[0], self.edits[1] + 1))):
            letters = [i for i, c in enumerate(chars) if c != " "]
            if len(letters) < 2:
                break
            i = letters[int(rng.integers(len(letters)))]
            kind = int(rng.integers(4))
            if kind == 0:
                chars[i] = _LETTERS[int(rng.integers(26))]
            elif kind == 1:
                del chars[i]
            elif kind == 2:
                chars.insert(i, _LETTERS[int(rng.integers(26))])
            elif i + 1 < len(chars) and chars[i + 1] != " ":
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)

    def example(self, rng: np.random.Generator, chars: int) -> tuple[str, str]:
        """(corrupted, clean) with the clean line at most ``chars`` characters."""
        line = self.clean(rng, chars)
        return self.corrupt(rng, line), line


def heldout(task: CopyTask, count: int, source_tokens: int) -> list[tuple[list[int], str]]:
    """``count`` held-out (source ids, clean text) pairs whose source is exactly ``source_tokens`` ids (eos included).

    >>> pairs = heldout(CopyTask(seed=0), 3, 16)
    >>> [len(ids) for ids, _ in pairs]
    [16, 16, 16]
    """
    rng = np.random.default_rng(HELDOUT_SEED + source_tokens)
    pairs: list[tuple[list[int], str]] = []
    while len(pairs) < count:
        source, target = task.example(rng, source_tokens + 2)
        ids = encode(source)
        if len(ids) == source_tokens:  # other lengths are drawn again
            pairs.append((ids, target))
    return pairs


@lru_cache(maxsize=4)
def _task(seed: int) -> CopyTask:
    return CopyTask(seed=seed)


def _batch(job: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step`` of the training stream (seed, step, size, longest line): padded sources and -100-padded targets."""
    seed, step, size, max_chars = job
    task, rng = _task(seed), np.random.default_rng([seed, step])
    pairs = [task.example(rng, int(rng.integers(8, max_chars + 1))) for _ in range(size)]
    sources, targets = [encode(s) for s, _ in pairs], [encode(t) for _, t in pairs]

    def pad(rows: list[list[int]], fill: int) -> np.ndarray:
        out = np.full((len(rows), max(map(len, rows))), fill, np.int64)
        for r, row in enumerate(rows):
            out[r, : len(row)] = row
        return out

    return pad(sources, 0), pad(targets, -100)


def _curriculum(step: int, steps: int, max_chars: int, start: int = 24) -> int:
    """Longest line of batch ``step``: ``start`` characters growing linearly to ``max_chars`` by half the steps."""
    return int(start + (max_chars - start) * min(1.0, 2 * step / steps))


def previous_token_init(model, heads: int = 2, bias: float = 8.0) -> None:
    """Start ``heads`` heads of the first encoder and decoder self-attention layers attending to the previous
    position (relative-position bucket 1 is offset -1 in both directions' bucketing). T5 has no absolute
    positions and cross-attention has no position bias, so copying needs an induction-like circuit: match the
    last emitted token against the token *before* each source position. From a plain init that circuit
    formed too slowly here (loss flat at ~2.0 nats/byte); a ready previous-token head shortcuts half of it."""
    import torch

    with torch.no_grad():
        for stack in (model.encoder, model.decoder):
            stack.block[0].layer[0].SelfAttention.relative_attention_bias.weight[1, :heads] += bias


def train(out: Path, *, steps: int, batch: int, seed: int, lr: float, max_chars: int, minutes: float,
          eval_count: int, induction_init: bool = False) -> dict:
    """Train on a GPU if there is one; write config.json, model.safetensors (fp16), train_log.json into ``out``."""
    import torch
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**T5_COPY_CONFIG))
    if induction_init:
        previous_token_init(model)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    task = CopyTask(seed=seed)
    start, losses, done = time.time(), [], 0

    def progress(s: int) -> float:  # steps or the time budget, whichever runs out first
        return min(1.0, max(s / steps, (time.time() - start) / (minutes * 60)))

    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, progress(s) * 20 + 1e-3) * 0.5 * (1 + np.cos(np.pi * progress(s))))
    model.train()
    for step in range(steps):
        if time.time() - start > minutes * 60:
            break
        arrays = _batch((seed, step, batch, _curriculum(step, steps, max_chars)))
        src, tgt = (torch.from_numpy(a).to(device) for a in arrays)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=src, attention_mask=(src != 0).long(), labels=tgt).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        done = step + 1
        if step % 100 == 0 or step == steps - 1:
            value = float(loss.detach())
            losses.append([step, round(value, 4)])
            print(f"step {step} loss {value:.4f} lr {schedule.get_last_lr()[0]:.2e} {time.time() - start:.0f}s", flush=True)
    train_s = time.time() - start
    model.eval()
    scores = {}
    for tokens in (16, 64, 128):
        pairs = heldout(task, eval_count, tokens)
        ids = torch.tensor([p[0] for p in pairs], device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens + 8,
                                 num_beams=1, do_sample=False)
        texts = [decode(row.tolist()) for row in gen]
        scores[str(tokens)] = round(sum(t == p[1] for t, p in zip(texts, pairs)) / len(pairs), 4)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(T5_COPY_CONFIG, indent=2) + "\n")
    save_file({k: v.detach().to(torch.float16).contiguous().clone().cpu() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    log = {"command": " ".join(["python", *sys.argv]), "seed": seed, "induction_init": induction_init, "steps": done, "batch": batch, "lr": lr,
           "max_chars": max_chars, "curriculum": "longest line 24 -> max_chars over the first half of the steps", "train_seconds": round(train_s, 1), "device": device,
           "torch": torch.__version__, "transformers": transformers.__version__, "loss": losses,
           "heldout_exact_match_by_source_tokens": scores, "heldout_examples": eval_count,
           "parameters": sum(p.numel() for p in model.parameters())}
    (out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgekit-t5-copy"))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-chars", type=int, default=160)
    parser.add_argument("--minutes", type=float, default=5.0, help="stop training after this long (then evaluate)")
    parser.add_argument("--eval", type=int, default=200, help="held-out examples per source length")
    parser.add_argument("--induction-init", action="store_true",
                        help="start two heads of the first self-attention layers on the previous token")
    args = parser.parse_args(argv)
    log = train(args.out, steps=args.steps, batch=args.batch, seed=args.seed, lr=args.lr, max_chars=args.max_chars,
                minutes=args.minutes, eval_count=args.eval, induction_init=args.induction_init)
    print(json.dumps({k: log[k] for k in ("steps", "train_seconds", "heldout_exact_match_by_source_tokens")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
