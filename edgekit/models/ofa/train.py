"""Progressive-shrinking trainer with in-place distillation, on one device or under ``torchrun`` (DDP).

Phases, as in once-for-all: ``full`` (largest subnet only), ``kernel`` (elastic kernel size), ``depth``
(elastic depth: first the two largest depths, then all), ``expand`` (elastic expand ratio after sorting
channels by importance: first the two largest, then all). Every step samples one input resolution;
the largest subnet learns from the labels and its detached outputs teach ``--subnets`` sampled subnets
(in-place knowledge distillation). All subnets of a step run in one DDP forward, so the same code runs
single-process or under ``torchrun`` (rank and world size from the environment; gloo on CPU, nccl on
GPU). Data come from :mod:`edgekit.models.ofa.data`; nothing is downloaded.

Rank 0 evaluates the largest, the smallest and a few sampled subnets on held-out images after BN
recalibration, writes the supernet as an fp16 checkpoint and a JSON report.

Example (a few seconds on a CPU):
    >>> import tempfile, os
    >>> out = tempfile.mkdtemp()
    >>> rc = main(["--space", "ofa-mbv3-tiny", "--steps", "1,1,2,2", "--batch-size", "8", "--eval-images", "40",
    ...            "--calib-images", "16", "--eval-subnets", "0", "--device", "cpu", "--quiet",
    ...            "--out", os.path.join(out, "net.pt"), "--report", os.path.join(out, "report.json")])
    >>> rc, sorted(os.listdir(out))
    (0, ['net.pt', 'report.json'])
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .calibrate import recalibrate_bn
from .checkpoint import load_checkpoint, save_checkpoint
from .config import SubnetConfig, largest, sample, smallest
from .cost import count_macs, count_params
from .data import CALIBRATION_SEED, GENERATOR_VERSION, HELDOUT_SEED, TRAIN_SEED, make_shapes, resize, shape_batches
from .space import OFASpace, get_space
from .supernet import OFASupernet, materialize

__all__ = ["PHASES", "TrainConfig", "evaluate_subnet", "main", "phase_choices", "train"]

PHASES = ("full", "kernel", "depth", "expand")
_RATE_FROM, _RATE_OVER = 10, 30  # with a time budget: time steps 10..40 of a phase, then fix its length


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (recorded in the checkpoint and the report)."""

    space: str = "ofa-mbv3-shapes"
    steps: tuple[int, int, int, int] = (300, 300, 300, 300)
    batch_size: int = 64
    lr: float = 0.1
    shrink_lr: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    subnets: int = 2
    kd_ratio: float = 1.0
    seed: int = 0
    image_size: int = 64
    amp: bool = True
    eval_images: int = 2000
    calib_images: int = 256
    eval_subnets: int = 3
    log_every: int = 50
    init: str | None = None
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        from edgekit.runtimes.errors import UsageError

        get_space(self.space)
        if len(self.steps) != len(PHASES) or min(self.steps) < 0 or sum(self.steps) < 1:
            raise UsageError(f"steps needs {len(PHASES)} non-negative counts ({', '.join(PHASES)}), got {self.steps}")
        for name in ("batch_size", "eval_images", "calib_images"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")


def phase_choices(phase: str, space: OFASpace, progress: float) -> dict[str, tuple[int, ...]]:
    """Allowed ks/e/d in ``phase`` at ``progress`` in [0, 1) of it (depth and expand widen halfway).

    Example:
        >>> from edgekit.models.ofa import get_space
        >>> s = get_space("ofa-mbv3-w1.0")
        >>> phase_choices("depth", s, 0.2), phase_choices("depth", s, 0.7)["d"]
        ({'ks': (3, 5, 7), 'e': (6,), 'd': (3, 4)}, (2, 3, 4))
    """
    ks, e, d = space.ks_choices, space.e_choices, space.d_choices
    if phase == "full":
        return {"ks": ks[-1:], "e": e[-1:], "d": d[-1:]}
    if phase == "kernel":
        return {"ks": ks, "e": e[-1:], "d": d[-1:]}
    if phase == "depth":
        return {"ks": ks, "e": e[-1:], "d": d[-2:] if progress < 0.5 else d}
    if phase == "expand":
        return {"ks": ks, "e": e[-2:] if progress < 0.5 else e, "d": d}
    raise ValueError(f"unknown phase {phase!r}: one of {PHASES}")


class _StepLoss(nn.Module):
    """All subnets of one step in one forward (what DDP wraps): teacher CE + students' CE and KD."""

    def __init__(self, supernet: OFASupernet, label_smoothing: float, kd_ratio: float) -> None:
        super().__init__()
        self.supernet = supernet
        self.label_smoothing, self.kd_ratio = label_smoothing, kd_ratio

    def forward(self, x: torch.Tensor, y: torch.Tensor, configs: list[SubnetConfig]) -> torch.Tensor:
        teacher = self.supernet(x, configs[0])
        loss = F.cross_entropy(teacher.float(), y, label_smoothing=self.label_smoothing)
        soft = F.softmax(teacher.detach().float(), dim=1)
        for cfg in configs[1:]:
            logits = self.supernet(x, cfg).float()
            ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            kd = -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
            loss = loss + ce + self.kd_ratio * kd
        return loss


def _optimizer(net: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, plain = [], []
    for name, p in net.named_parameters():
        (decay if p.dim() == 4 or name.endswith("classifier.weight") else plain).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def _lr(base: float, step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def evaluate_subnet(
    supernet: OFASupernet,
    config: SubnetConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    calib: torch.Tensor | None,
    batch_size: int = 500,
) -> float:
    """Top-1 accuracy of the materialized subnet at its resolution; BN recalibrated on ``calib`` if given.

    Example:
        >>> import torch
        >>> from edgekit.models.ofa import build_supernet, smallest, make_shapes
        >>> net = build_supernet("ofa-mbv3-tiny")
        >>> x, y = make_shapes(20, seed=1, size=32)
        >>> 0.0 <= evaluate_subnet(net, smallest(net.space), x, y, calib=x) <= 1.0
        True
    """
    device = next(supernet.parameters()).device
    sub = materialize(supernet, config)
    if calib is not None:
        recalibrate_bn(sub, resize(calib, config.r), batch_size=128)
    correct = 0
    for xs, ys in zip(images.split(batch_size), labels.split(batch_size)):
        pred = sub(resize(xs.to(device), config.r)).argmax(1)
        correct += int((pred == ys.to(device)).sum())
    return correct / images.shape[0]


def _dist_env() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _checksum(net: nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() * (i + 1) for i, p in enumerate(net.parameters())))


def train(cfg: TrainConfig, device: str = "auto", out: str | None = None, report: str | None = None,
          quiet: bool = False) -> dict:
    """Run progressive shrinking; returns the report dict (rank 0 also writes ``out`` and ``report``).

    Example:
        >>> r = train(TrainConfig(space="ofa-mbv3-tiny", steps=(1, 1, 1, 1), batch_size=4, eval_images=20,
        ...                       calib_images=8, eval_subnets=0), device="cpu", quiet=True)
        >>> sorted(r["accuracy"])
        ['largest', 'smallest']
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world, local_rank = _dist_env()
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = False  # elastic shapes change every step: autotuning never pays off
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    log = (lambda *a: None) if (quiet or rank != 0) else (lambda *a: print(*a, flush=True))

    space = get_space(cfg.space)
    torch.manual_seed(cfg.seed)
    supernet = OFASupernet(space).to(dev)
    if cfg.init:
        load_checkpoint(supernet, cfg.init)
    step_loss = _StepLoss(supernet, cfg.label_smoothing, cfg.kd_ratio)
    model = (
        DistributedDataParallel(step_loss, device_ids=[dev.index] if use_cuda else None, find_unused_parameters=True)
        if world > 1
        else step_loss
    )
    batches = shape_batches(cfg.batch_size, TRAIN_SEED + cfg.seed, cfg.image_size, dev, rank, world)
    amp = cfg.amp and use_cuda
    history: list[dict] = []
    steps_run: list[int] = []
    started = time.time()
    global_step = 0
    for phase, steps in zip(PHASES, cfg.steps):
        if steps == 0:
            continue
        if phase == "expand":
            for block in supernet.blocks:
                block.sort_channels_()
        optimizer = _optimizer(supernet, cfg.lr if phase == "full" else cfg.shrink_lr, cfg.weight_decay)
        base_lr = cfg.lr if phase == "full" else cfg.shrink_lr
        warmup = cfg.warmup_steps if phase == "full" else min(cfg.warmup_steps, steps // 10)
        supernet.train()
        share = cfg.time_budget_s * steps / sum(cfg.steps) if cfg.time_budget_s else None
        planned, step, mark = steps, 0, None
        while step < planned:
            if share is not None and step == _RATE_FROM:
                mark = time.time()
            if share is not None and step == _RATE_FROM + _RATE_OVER:  # fit the phase into its time share
                rate = (time.time() - mark) / _RATE_OVER
                planned = max(step + 1, min(steps, int(share / rate)))
            rng = random.Random(cfg.seed * 1_000_003 + global_step)  # same subnets on every rank
            choices = phase_choices(phase, space, step / planned)
            resolution = rng.choice(space.resolutions)
            teacher = largest(space, resolution)
            students = [] if phase == "full" else [
                sample(space, rng, r=(resolution,), **choices) for _ in range(cfg.subnets)
            ]
            x, y = next(batches)
            x = resize(x, resolution)
            lr = _lr(base_lr, step, planned, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = model(x, y, [teacher, *students])
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), 5.0)
            optimizer.step()
            global_step += 1
            step += 1
            if (step - 1) % cfg.log_every == 0 or step == planned:
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"loss is {loss.item()} at {phase} step {step - 1}")
                entry = {"phase": phase, "step": step - 1, "loss": round(loss.item(), 4), "lr": round(lr, 5),
                         "elapsed_s": round(time.time() - started, 1)}
                history.append(entry)
                log(json.dumps(entry))
        steps_run.append(planned)
    train_seconds = time.time() - started

    checksums = [_checksum(supernet)]
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, checksums[0])
        checksums = gathered
    result = {
        "space": space.name,
        "train_config": asdict(cfg),
        "data_generator_version": GENERATOR_VERSION,
        "world_size": world,
        "device": torch.cuda.get_device_name(dev) if use_cuda else "cpu",
        "train_seconds": round(train_seconds, 1),
        "steps_run": steps_run,
        "history": history,
        "replica_checksums": checksums,
    }
    if rank == 0:
        meta = {"space": space.name, "seed": cfg.seed, "data_generator_version": GENERATOR_VERSION,
                "train_config": json.dumps(asdict(cfg)), "steps_run": steps_run}
        if out:  # saved first (fp16), then evaluated as saved
            save_checkpoint(supernet, out, meta=meta)
            load_checkpoint(supernet, out)
            result["evaluated"] = "the fp16 checkpoint as written"
        result.update(_evaluate(supernet, space, cfg, dev, log))
        if report:
            Path(report).parent.mkdir(parents=True, exist_ok=True)
            Path(report).write_text(json.dumps(result, indent=1) + "\n")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _evaluate(supernet: OFASupernet, space: OFASpace, cfg: TrainConfig, dev: torch.device, log) -> dict:
    images, labels = make_shapes(cfg.eval_images, seed=HELDOUT_SEED, size=cfg.image_size)
    calib, _ = make_shapes(cfg.calib_images, seed=CALIBRATION_SEED, size=cfg.image_size)
    calib = calib.to(dev)
    rng = random.Random(12345)
    named = {"largest": largest(space), "smallest": smallest(space)}
    for i in range(cfg.eval_subnets):
        named[f"sample{i}"] = sample(space, rng)
    supernet.eval()
    accuracy = {}
    for name, config in named.items():
        accuracy[name] = {
            "config": config.to_dict(),
            "macs": count_macs(config, space),
            "params": count_params(config, space),
            "top1": round(evaluate_subnet(supernet, config, images, labels, calib), 4),
            "top1_without_bn_recalibration": round(evaluate_subnet(supernet, config, images, labels, None), 4),
        }
        log(f"{name:>9}  r={config.r:<3} MMACs={accuracy[name]['macs'] / 1e6:7.2f}  "
            f"top1={accuracy[name]['top1']:.4f} (no recal {accuracy[name]['top1_without_bn_recalibration']:.4f})")
    return {"accuracy": accuracy, "eval": {"images": cfg.eval_images, "seed": HELDOUT_SEED,
                                            "calib_images": cfg.calib_images, "calib_seed": CALIBRATION_SEED}}


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m edgekit.models.ofa.train", description=__doc__.split("\n")[0])
    p.add_argument("--space", default=d.space)
    p.add_argument("--steps", default=",".join(map(str, d.steps)), help="steps per phase: full,kernel,depth,expand")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per process and step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of the full phase")
    p.add_argument("--shrink-lr", type=float, default=d.shrink_lr, help="peak learning rate of later phases")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--subnets", type=int, default=d.subnets, help="sampled subnets per step besides the largest")
    p.add_argument("--kd-ratio", type=float, default=d.kd_ratio)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-size", type=int, default=d.image_size, help="generated image size (then resized)")
    p.add_argument("--no-amp", action="store_true", help="train in fp32 on CUDA (default: bf16 autocast)")
    p.add_argument("--eval-images", type=int, default=d.eval_images)
    p.add_argument("--calib-images", type=int, default=d.calib_images)
    p.add_argument("--eval-subnets", type=int, default=d.eval_subnets, help="sampled subnets to evaluate")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--init", default=None, help="start from this checkpoint")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="shorten phases (never lengthen) to fit this many seconds, shared in proportion to --steps")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="fp16 supernet checkpoint to write")
    p.add_argument("--report", default=None, help="JSON report to write")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m edgekit.models.ofa.train --space ofa-mbv3-shapes --steps 300,300,300,300``.

    Example:
        >>> main(["--steps", "1,2"])
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: steps needs 4 non-negative counts (full, kernel, depth, expand), got (1, 2)
    """
    from edgekit.runtimes.errors import UsageError

    args = _parser().parse_args(argv)
    try:
        steps = tuple(int(s) for s in args.steps.split(","))
    except ValueError:
        raise UsageError(f"--steps must be comma-separated ints (full,kernel,depth,expand), got {args.steps!r}") from None
    cfg = TrainConfig(
        space=args.space, steps=steps, batch_size=args.batch_size, lr=args.lr, shrink_lr=args.shrink_lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, subnets=args.subnets,
        kd_ratio=args.kd_ratio, seed=args.seed, image_size=args.image_size, amp=not args.no_amp,
        eval_images=args.eval_images, calib_images=args.calib_images, eval_subnets=args.eval_subnets,
        log_every=args.log_every, init=args.init, time_budget_s=args.time_budget_s,
    )
    train(cfg, device=args.device, out=args.out, report=args.report, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
