"""Structured pruning of a Hugging Face ``SegformerForSemanticSegmentation``: whole attention heads and
MLP widths, through torch-pruning.

Each attention block's q/k/v projections lose whole heads (``num_heads``, ``prune_num_heads=True``,
``prune_head_dims=False``: the head dimension stays, so the model's ``view(..., -1, head_dim)`` still
splits heads right) and each Mix-FFN loses ``ratio`` of its hidden units (``fc1`` outputs, the depthwise
conv, ``fc2`` inputs). The residual width (patch embeddings, ``o_proj``, ``fc2`` outputs), the
sequence-reduction convs and the decode head are left as they are. The modules' ``num_attention_heads``
and the config's ``num_attention_heads`` (and ``mlp_ratios`` when the kept widths are whole multiples of
the hidden size: the config takes integers only) are updated so the model still runs and describes itself.
tests/test_compress_prune.py builds a tiny Segformer from a config (random weights), prunes it and exports
it through the pipeline.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgekit.runtimes.errors import UsageError

from .prune import PruneResult, _run_named, _tp, count_macs, prune_to_macs

__all__ = ["SegformerLogits", "is_segformer", "prune_segformer", "prune_segformer_to_macs", "segformer_macs"]


class SegformerLogits(nn.Module):
    """A Segformer as a plain image -> logits module (N, C, H/4, W/4): what torch-pruning traces and the
    export pipeline takes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=image).logits


def is_segformer(model: nn.Module) -> bool:
    """A ``SegformerForSemanticSegmentation``, or a module holding one as ``.model`` (the hf-seg adapter)."""
    return hasattr(model, "segformer") or hasattr(getattr(model, "model", None), "segformer")


def _attention_blocks(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(stage index, attention module) of every block that has q/k/v projections and a head count."""
    blocks = []
    for stage_index, stage in enumerate(model.segformer.stages):
        for module in stage.modules():
            if all(hasattr(module, a) for a in ("q_proj", "k_proj", "v_proj", "num_attention_heads", "head_dim")):
                blocks.append((stage_index, module))
    return blocks


def prune_segformer(model: nn.Module, ratio: float, *, size: int = 64) -> nn.Module:
    """A pruned copy of ``model``: ``ratio`` of each block's attention heads (rounded down, at least one head
    kept) and of each Mix-FFN's hidden units removed. ``model`` is a ``SegformerForSemanticSegmentation``
    (the copy comes wrapped as :class:`SegformerLogits`) or a module holding one as ``.model`` and taking the
    image alone (such as the ``hf-seg:DIR`` family's adapter; the copy keeps its wrapper)."""
    from .sparsity import check_ratio

    check_ratio(ratio, "--prune")
    tp = _tp()
    bare = hasattr(model, "segformer")
    wrapped = (SegformerLogits(copy.deepcopy(model)) if bare else copy.deepcopy(model)).eval()
    inner = getattr(wrapped, "model", None)
    if inner is None:
        raise UsageError(f"{type(model).__name__}: not a SegformerForSemanticSegmentation nor a module holding one "
                         "as .model")
    if not hasattr(inner, "segformer") or not hasattr(inner.segformer, "stages"):
        raise UsageError(f"{type(model).__name__}: not a SegformerForSemanticSegmentation (no segformer.stages)")
    example = torch.zeros(1, inner.config.num_channels, size, size)
    before = _run_named(wrapped, example, "segformer before pruning")
    attention = _attention_blocks(inner)
    num_heads = {}
    for _, block in attention:
        for proj in (block.q_proj, block.k_proj, block.v_proj):
            num_heads[proj] = block.num_attention_heads
    keep = set(num_heads)
    fc1 = [m.fc1 for m in inner.modules() if hasattr(m, "fc1") and hasattr(m, "fc2")]
    keep.update(fc1)
    ignored = [m for m in wrapped.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m not in keep
               and not (isinstance(m, nn.Conv2d) and m.groups > 1)]  # depthwise convs follow fc1
    pruner = tp.pruner.MetaPruner(
        wrapped, example, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
        ignored_layers=ignored, num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
        head_pruning_ratio=ratio)
    with torch.no_grad():
        pruner.step()
    heads = list(inner.config.num_attention_heads)
    for stage, block in attention:
        block.num_attention_heads = block.q_proj.out_features // block.head_dim
        heads[stage] = block.num_attention_heads
    inner.config.num_attention_heads = heads
    widths = {}
    for stage_index, stage in enumerate(inner.segformer.stages):
        for module in stage.modules():
            if hasattr(module, "fc1") and hasattr(module, "fc2"):
                widths[stage_index] = module.fc1.out_features / module.fc1.in_features
    ratios = [widths.get(i, r) for i, r in enumerate(inner.config.mlp_ratios)]
    if all(float(r).is_integer() for r in ratios):  # the config takes whole ratios only; else the modules say it
        inner.config.mlp_ratios = [int(r) for r in ratios]
    after = _run_named(wrapped, example, "segformer after pruning")
    if before.shape != after.shape:
        raise UsageError(f"segformer pruning changed the logits' shape {tuple(before.shape)} -> {tuple(after.shape)}")
    return wrapped


def segformer_macs(model: nn.Module, size: int = 64) -> tuple[int, int]:
    """(MACs, parameters) of a Segformer (bare or wrapped) on one ``size`` x ``size`` image."""
    wrapped = SegformerLogits(model) if hasattr(model, "segformer") else model
    return count_macs(wrapped.eval(), torch.zeros(1, wrapped.model.config.num_channels, size, size))


def prune_segformer_to_macs(model: nn.Module, example: torch.Tensor, ratio: float, *,
                            tolerance: float = 0.02) -> PruneResult:
    """:func:`prune_segformer` at the head / MLP-width ratio (found by the same bisection as
    :func:`edgekit.compress.prune.prune_to_macs`) that removes ``ratio`` of the MACs within ``tolerance``;
    ``model`` takes the image alone (a wrapper such as :class:`SegformerLogits`)."""

    def prune(module: nn.Module, inputs: torch.Tensor, rates, **_: object) -> nn.Module:
        return prune_segformer(module, max(rates.values()), size=int(inputs.shape[-1]))

    return prune_to_macs(model, example, ratio, tolerance=tolerance, prune=prune)
