"""Weight masks that fine-tuning keeps: unstructured magnitude masks and N:M semi-structured masks.

A mask set is ``{parameter name: bool tensor}`` over the weights of ``Conv*d`` / ``Linear`` layers.
N:M groups run along the *input* dimension (axis 1 of ``(out, in, ...)``), M consecutive input channels at
each output / kernel position: the layout NVIDIA's sparse tensor cores (and TensorRT's
``--sparsity=enable``) accelerate for 2:4. Layers whose input count is not a multiple of M are left dense.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(8, 2)
    >>> masks = nm_masks(net, 2, 4)
    >>> apply_masks(net, masks)
    >>> int((net.weight.reshape(2, 2, 4) != 0).sum(-1).max())
    2
"""

from __future__ import annotations

import re
from typing import Dict, Iterator

import torch
from torch import nn

from edgekit.runtimes.errors import UsageError

__all__ = ["Masks", "parse_pattern", "check_ratio", "prunable_weights", "magnitude_masks", "nm_masks", "apply_masks",
           "count_params", "count_nonzero", "mask_sparsity"]

Masks = Dict[str, torch.Tensor]


def parse_pattern(text: str) -> tuple[int, int]:
    """``--sparsity N:M`` as (N, M) with 0 < N < M.

    Example:
        >>> parse_pattern("2:4")
        (2, 4)
        >>> parse_pattern("4:4")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --sparsity 4:4: expected N:M with 0 < N < M, such as 2:4
    """
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match or not 0 < int(match[1]) < int(match[2]):
        raise UsageError(f"--sparsity {text}: expected N:M with 0 < N < M, such as 2:4")
    return int(match[1]), int(match[2])


def check_ratio(value: float, option: str) -> float:
    """A ratio strictly inside (0, 1), else a one-line UsageError naming ``option``.

    Example:
        >>> check_ratio(1.0, "--prune")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: --prune 1: expected a ratio strictly between 0 and 1, such as 0.5
    """
    if not 0.0 < value < 1.0:
        raise UsageError(f"{option} {value:g}: expected a ratio strictly between 0 and 1, such as 0.5")
    return value


def prunable_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(parameter name, weight) of every convolution and linear layer."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            yield (f"{name}.weight" if name else "weight"), module.weight


def magnitude_masks(model: nn.Module, sparsity: float) -> Masks:
    """Per layer, keep the ``1 - sparsity`` fraction of weights of largest magnitude (Zhu & Gupta prune each
    layer to the same sparsity).

    Example:
        >>> net = torch.nn.Linear(10, 10)
        >>> round(mask_sparsity(magnitude_masks(net, 0.8)), 2)
        0.8
    """
    masks: Masks = {}
    for name, weight in prunable_weights(model):
        w = weight.detach().abs().flatten()
        drop = int(round(sparsity * w.numel()))
        mask = torch.ones_like(w, dtype=torch.bool)
        if drop > 0:
            mask[torch.topk(w, drop, largest=False).indices] = False
        masks[name] = mask.view_as(weight)
    return masks


def nm_masks(model: nn.Module, n: int, m: int) -> Masks:
    """In each group of ``m`` consecutive input weights keep the ``n`` largest (layers with an input count
    not divisible by ``m``, such as a 3-channel stem, stay dense and get no mask)."""
    masks: Masks = {}
    for name, weight in prunable_weights(model):
        if weight.dim() < 2 or weight.shape[1] % m:
            continue
        w = weight.detach().abs().movedim(1, -1)  # (out, ..., in)
        groups = w.reshape(-1, m)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, torch.topk(groups, n, dim=1).indices, True)
        masks[name] = keep.reshape(w.shape).movedim(-1, 1).contiguous()
    return masks


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Zero the masked-out weights in place (after every optimizer step of fine-tuning)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask.to(params[name].dtype))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Non-zero parameters (what a sparse or compressed file must store).

    Example:
        >>> net = torch.nn.Linear(4, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(net.weight)
        >>> count_nonzero(net)
        0
    """
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


def mask_sparsity(masks: Masks) -> float:
    """The fraction of masked-out weights over all masked layers."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total if total else 0.0
