"""Train a segmenter on the procedural scenes and write its fp16 state dict with a JSON record beside it.

``python -m edgekit.models.seg.train --preset mobile --head simple --steps 3000 --size 64 --seed 0
--out edgekit/models/weights/seg_simple.pt`` renders a pool of training scenes (in parallel
processes), trains with AdamW and a one-cycle schedule on random flips of them (bf16 autocast on a
GPU), rounds the weights to fp16 and scores that file in fp32 on ``--val-scenes`` val scenes; the JSON
records the command, the seed, the config, the steps and the val mIoU (also on the first
``CHECK_SCENES`` val scenes, which tests re-measure on a CPU).

Example (a few seconds on a CPU):
    >>> import tempfile, os, json
    >>> out = os.path.join(tempfile.mkdtemp(), "seg.pt")
    >>> main(["--steps", "2", "--batch", "4", "--train-scenes", "8", "--val-scenes", "4", "--size", "32",
    ...       "--workers", "1", "--device", "cpu", "--out", out, "--quiet"])
    0
    >>> sorted(json.load(open(out[:-3] + ".json"))["val"])
    ['check_miou', 'check_scenes', 'miou', 'per_class_iou', 'pixel_accuracy', 'scenes']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .data import CLASS_NAMES, NUM_CLASSES, make_scenes
from .metrics import SegScore, score_confusion, confusion_matrix
from .model import SEG_PRESETS, SegConfig, build_segmenter

__all__ = ["main", "evaluate", "fp16_state_dict", "add_scene_options", "CHECK_SCENES"]

CHECK_SCENES = 64  # the val scenes whose mIoU the tests re-measure from the shipped file


def _render(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    n, size, seed, first = args
    return make_scenes(n, size, split="train", seed=seed, first=first)


def train_pool(n: int, size: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` train scenes, rendered in ``workers`` processes (chunks of 256)."""
    chunks = [(min(256, n - s), size, seed, s) for s in range(0, n, 256)]
    if workers <= 1:
        parts = [_render(c) for c in chunks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render, chunks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@torch.no_grad()
def evaluate(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, num_classes: int,
             device: str = "cpu", batch: int = 64) -> SegScore:
    """mIoU of ``net`` (eval mode, fp32) on the scenes."""
    net.eval()
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for i in range(0, len(images), batch):
        logits = net(torch.from_numpy(images[i:i + batch]).to(device))
        confusion += confusion_matrix(logits.argmax(1).cpu().numpy(), labels[i:i + batch], num_classes)
    return score_confusion(confusion, len(images))


def fp16_state_dict(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with floating tensors in fp16, on the CPU (the shipped form)."""
    return {k: (v.half() if v.is_floating_point() else v).cpu().clone() for k, v in net.state_dict().items()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgekit.models.seg.train", description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(SEG_PRESETS), default="mobile")
    p.add_argument("--head", choices=("simple", "vwformer"), default="simple")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    add_scene_options(p, train_scenes=20000)
    return p


def add_scene_options(p: argparse.ArgumentParser, *, train_scenes: int) -> None:
    """The options every scene-training script shares: scene counts, render workers, device, output, quiet."""
    p.add_argument("--train-scenes", type=int, default=train_scenes)
    p.add_argument("--val-scenes", type=int, default=512)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    torch.manual_seed(args.seed)
    config: SegConfig = replace(SEG_PRESETS[args.preset], head=args.head)
    start = time.time()  # render before touching the GPU (the workers fork)
    images, labels = train_pool(args.train_scenes, args.size, args.seed, args.workers)
    val_images, val_labels = make_scenes(args.val_scenes, args.size, split="val", seed=0)
    say(f"rendered {len(images)} train + {len(val_images)} val scenes in {time.time() - start:.1f} s")
    net = build_segmenter(config).to(args.device)
    x_all = torch.from_numpy(images).to(args.device, torch.float16)
    y_all = torch.from_numpy(labels.astype(np.uint8)).to(args.device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=max(args.steps, 1), pct_start=0.1)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    cuda = args.device.startswith("cuda")
    net.train()
    start = time.time()
    for step in range(args.steps):
        idx = torch.randint(len(x_all), (args.batch,), generator=gen).to(args.device)
        x, y = x_all[idx].float(), y_all[idx].long()
        flip = torch.rand(args.batch, generator=gen).to(args.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps - 1:
            say(f"step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    seconds = time.time() - start
    state = fp16_state_dict(net)
    net.load_state_dict(state)  # score the weights as shipped (fp16, run in fp32)
    val = evaluate(net, val_images, val_labels, config.num_classes, args.device)
    check = evaluate(net.cpu(), val_images[:CHECK_SCENES], val_labels[:CHECK_SCENES], config.num_classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    command = (f"python -m edgekit.models.seg.train --preset {args.preset} --head {args.head} --steps {args.steps} "
               f"--size {args.size} --seed {args.seed} --batch {args.batch} --lr {args.lr} "
               f"--train-scenes {args.train_scenes} --val-scenes {args.val_scenes} --out {args.out.name}")
    record = {
        "file": args.out.name, "format": "segmenter state dict, float16 (edgekit.models.seg.model.build_segmenter)",
        "config": asdict(config), "preset": args.preset, "seed": args.seed, "steps": args.steps,
        "params": sum(p.numel() for p in net.parameters()), "training_command": command,
        "data": {"module": "edgekit.models.seg.data", "classes": list(CLASS_NAMES), "size": args.size,
                 "train": f"make_scenes({args.train_scenes}, {args.size}, split='train', seed={args.seed}), random flips"},
        "training": {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                     "train_seconds": round(seconds, 1), "batch": args.batch, "lr": args.lr,
                     "note": "GPU training (bf16 autocast) is not bit-reproducible"},
        "val": {"scenes": args.val_scenes, "miou": val.miou, "pixel_accuracy": val.pixel_accuracy,
                "per_class_iou": dict(zip(CLASS_NAMES, val.to_json()["per_class_iou"])),
                "check_scenes": CHECK_SCENES, "check_miou": check.miou},
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    say(f"val mIoU {100 * val.miou:.2f} ({args.val_scenes} scenes), first {CHECK_SCENES} on CPU "
        f"{100 * check.miou:.2f}; {seconds:.0f} s of training; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
