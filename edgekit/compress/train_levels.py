"""Train the shipped compression levels of a built-in segmenter (a GPU makes this minutes; a CPU, hours).

    python -m edgekit.compress.train_levels --model seg-simple --levels 0.3,0.5,0.7 --allocation sensitivity \\
        --round-to 8 --steps 6000 --out edgekit/models/weights

For each level: prune the shipped dense weights exactly as ``edgekit compress`` does (same allocation, rounding
and probe scenes), fine-tune with distillation from the dense model on ``--train-scenes`` training scenes with
random flips (bf16 autocast on a GPU, learning rate on a cosine decay), round to fp16, score on the val
scenes the dense record used, and write ``<dense stem>_p<percent>.pt`` with a JSON record (command, seed,
settings, MACs, val mIoU of the level and of the dense model) that :mod:`edgekit.compress.levels` reads.

Example (seconds on a CPU; a level of 2 steps):
    >>> import tempfile, json, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> main(["--levels", "0.5", "--steps", "2", "--batch", "4", "--train-scenes", "8", "--val-scenes", "4",
    ...       "--device", "cpu", "--out", str(out), "--quiet"])
    0
    >>> record = json.loads((out / "seg_simple_p50.json").read_text())
    >>> record["level"], record["allocation"], 0.45 < record["macs_removed"] < 0.55
    (0.5, 'sensitivity', True)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import numpy as np
import torch

from .allocation import ALLOCATIONS, allocate_and_prune
from .checkpoint import save_pruned
from .finetune import FinetuneConfig, finetune

__all__ = ["main", "prune_level", "PROBE_SCENES"]

PROBE_SCENES = 16  # training scenes the sensitivity allocation measures on


def prune_level(dense: torch.nn.Module, example: torch.Tensor, ratio: float, allocation: str, round_to: int | None,
                seed: int = 0):
    """``dense`` pruned as ``edgekit compress`` prunes a built-in segmenter (probe: its first 16 training scenes,
    which are the same whether 16 or all of them are rendered)."""
    from .data import family_scenes

    probe = family_scenes(PROBE_SCENES, int(example.shape[-1]), "train", seed)
    return allocate_and_prune(dense, example, ratio, allocation, images=torch.from_numpy(probe.images),
                              labels=torch.from_numpy(probe.labels), round_to=round_to)


def _parser() -> argparse.ArgumentParser:
    from edgekit.models.seg.train import add_scene_options

    p = argparse.ArgumentParser(prog="python -m edgekit.compress.train_levels", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="seg-simple")
    p.add_argument("--levels", default="0.3,0.5,0.7", help="fractions of the MACs removed, comma-separated")
    p.add_argument("--allocation", choices=ALLOCATIONS, default="sensitivity")
    p.add_argument("--round-to", type=int, default=8, help="channel multiple (0: none)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    add_scene_options(p, train_scenes=40000)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from edgekit.models.seg.data import CLASS_NAMES, make_scenes
    from edgekit.models.seg.source import load_builtin, weights_path
    from edgekit.models.seg.train import evaluate, fp16_state_dict, train_pool

    from .levels import weights_sha256
    from .prune import count_macs

    args = _parser().parse_args(argv)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    round_to = args.round_to or None
    images, labels = train_pool(args.train_scenes, args.size, args.seed, args.workers)
    val_images, val_labels = make_scenes(args.val_scenes, args.size, split="val", seed=0)
    dense, _ = load_builtin(args.model)
    dense = dense.float().eval()
    num_classes = dense.config.num_classes
    example = torch.zeros(1, 3, args.size, args.size)
    dense_val = evaluate(dense, val_images, val_labels, num_classes)
    x_all = torch.from_numpy(images).half()  # halves the pool's memory; batches run in fp32 / bf16
    y_all = torch.from_numpy(labels.astype(np.uint8))
    for ratio in (float(v) for v in args.levels.split(",")):
        torch.manual_seed(args.seed)
        result, _ = prune_level(dense, example, ratio, args.allocation, round_to, args.seed)
        model = result.model
        start = time.time()
        losses = finetune(model, dense, x_all, y_all, FinetuneConfig(
            args.steps, batch=args.batch, lr=args.lr, seed=args.seed, device=args.device, flip=True))
        seconds = time.time() - start
        model.load_state_dict(fp16_state_dict(model))  # score the weights as shipped (fp16, run in fp32)
        val = evaluate(model.float(), val_images, val_labels, num_classes)
        path = args.out / f"{weights_path(args.model).stem}_p{round(100 * ratio)}.pt"
        args.out.mkdir(parents=True, exist_ok=True)
        save_pruned(model.half(), path)
        macs, params = count_macs(model.float(), example)
        command = (f"python -m edgekit.compress.train_levels --model {args.model} --levels {ratio:g} "
                   f"--allocation {args.allocation} --round-to {args.round_to} --steps {args.steps} --batch {args.batch} "
                   f"--lr {args.lr} --seed {args.seed} --size {args.size} --train-scenes {args.train_scenes} "
                   f"--val-scenes {args.val_scenes} --out DIR")
        record = {
            "file": path.name, "format": "torch-pruning state (edgekit.compress.checkpoint), float16",
            "model": args.model, "level": ratio, "allocation": args.allocation, "round_to": round_to,
            "dense_sha256": weights_sha256(weights_path(args.model)), "macs_removed": result.removed,
            "macs": macs, "params": params, "widths": [m.out_channels for m in model.modules()
                                                       if isinstance(m, torch.nn.Conv2d)],
            "training_command": command, "seed": args.seed,
            "finetune": {"steps": args.steps, "batch": args.batch, "lr": args.lr, "schedule": "cosine",
                         "loss": "distillation from the dense model (T 2, alpha 0.5) + cross-entropy",
                         "train": f"make_scenes({args.train_scenes}, {args.size}, split='train', seed={args.seed}), "
                                  "random flips", "loss_first": losses[0], "loss_last": losses[-1],
                         "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                         "torch": torch.__version__, "train_seconds": round(seconds, 1),
                         "note": "GPU training (bf16 autocast) is not bit-reproducible"},
            "val": {"scenes": args.val_scenes, "miou": val.miou, "dense_miou": dense_val.miou,
                    "per_class_iou": dict(zip(CLASS_NAMES, val.to_json()["per_class_iou"]))},
        }
        path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
        say(f"level {ratio:g}: {100 * result.removed:.1f}% MACs removed, val mIoU {100 * val.miou:.2f} "
            f"(dense {100 * dense_val.miou:.2f}), {seconds:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
