"""Short fine-tuning with distillation from the dense model that keeps the sparsity masks.

The loss is ``alpha * T^2 * KL(teacher || student)`` on temperature-softened per-pixel (or per-sample)
class distributions plus ``(1 - alpha) * CE(student, labels)``. After every optimizer step the masks
are applied again, so pruned weights stay zero: fixed masks (N:M) or masks that grow on Zhu & Gupta's
cubic schedule (gradual magnitude pruning, :func:`gradual_masks`).

Example:
    >>> import torch
    >>> from edgekit.compress.sparsity import mask_sparsity
    >>> teacher = torch.nn.Conv2d(3, 4, 1)
    >>> student = torch.nn.Conv2d(3, 4, 1)
    >>> images, labels = torch.randn(8, 3, 4, 4), torch.randint(0, 4, (8, 4, 4))
    >>> masks = gradual_masks(0.5, 4)
    >>> losses = finetune(student, teacher, images, labels, FinetuneConfig(steps=4, batch=4), masks)
    >>> len(losses), round(mask_sparsity(masks(student, 4)), 2)
    (4, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import nn
from torch.nn import functional as F

from .schedule import cubic_sparsity
from .sparsity import Masks, apply_masks, magnitude_masks

__all__ = ["FinetuneConfig", "MaskPlan", "distill_loss", "gradual_masks", "finetune"]

# Masks kept during fine-tuning: fixed, or a function of (model, step) (gradual magnitude pruning).
MaskPlan = Union[Masks, Callable[[nn.Module, int], Masks], None]


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int
    batch: int = 8
    lr: float = 1e-3
    temperature: float = 2.0
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha weighs the labels' cross-entropy
    seed: int = 0
    device: str = "cpu"  # "cuda": images, teacher and student move there, steps run under bf16 autocast
    flip: bool = False  # random horizontal flips of image batches (and their label maps)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None, *,
                 temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """KL on the class axis (1) of logits shaped (N, C, ...), averaged over samples and pixels, plus CE.

    Example:
        >>> x = torch.randn(2, 3, 4, 4)
        >>> float(distill_loss(x, x, None))
        0.0
    """
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="none",
                  log_target=True).sum(dim=1).mean() * t * t
    if labels is None:
        return kl
    return alpha * kl + (1 - alpha) * F.cross_entropy(student, labels)


def gradual_masks(final: float, steps: int, *, ramp: float = 0.75) -> Callable[[nn.Module, int], Masks]:
    """Magnitude masks raised on the cubic schedule from 0 to ``final`` over the first ``ramp`` of ``steps``
    (then held), recomputed from the current weights at each step."""
    span = max(1, int(ramp * steps))

    def at(model: nn.Module, step: int) -> Masks:
        return magnitude_masks(model, cubic_sparsity(step, final=final, steps=span))

    return at


def _masks(plan: MaskPlan, model: nn.Module, step: int) -> Masks | None:
    return plan(model, step) if callable(plan) else plan


def finetune(student: nn.Module, teacher: nn.Module, images: torch.Tensor, labels: torch.Tensor | None,
             config: FinetuneConfig, masks: MaskPlan = None) -> list[float]:
    """Train ``student`` in place for ``config.steps`` Adam steps (learning rate on a cosine decay) on random
    batches; returns the losses. The masks (if any) are applied before the first step and after every step.
    With ``config.device`` a GPU, student and teacher end back on the CPU."""
    generator = torch.Generator().manual_seed(config.seed)
    device, cuda = torch.device(config.device), config.device.startswith("cuda")
    teacher, images = teacher.eval().to(device), images.to(device)
    labels = None if labels is None else labels.to(device)
    student.to(device)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.steps, 1))  # decays to 0
    current = _masks(masks, student, 0)
    if current:
        apply_masks(student, current)
    losses = []
    student.train()
    for step in range(1, config.steps + 1):
        index = torch.randint(0, len(images), (min(config.batch, len(images)),), generator=generator).to(device)
        batch, batch_labels = images[index].float(), None if labels is None else labels[index].long()
        if config.flip:
            flip = (torch.rand(len(index), generator=generator) < 0.5).to(device)
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            if batch_labels is not None and batch_labels.dim() == 3:
                batch_labels = torch.where(flip[:, None, None], batch_labels.flip(-1), batch_labels)
        with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            with torch.no_grad():
                target = teacher(batch)
            loss = distill_loss(student(batch).float(), target.float(), batch_labels,
                                temperature=config.temperature, alpha=config.alpha)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        current = _masks(masks, student, step)
        if current:
            apply_masks(student, current)
        losses.append(float(loss.detach()))
    student.eval().cpu()
    teacher.cpu()
    return losses
