"""``--model hf-seg:DIR``: a local Hugging Face ``SegformerForSemanticSegmentation`` directory as a segmenter.

The adapter takes (N, 3, H, W) images and returns (N, num_labels, H, W) logits: SegFormer's stride-4
logits upsampled bilinearly to the input size, like the family's own segmenters. Nothing downloads
(``local_files_only``); the directory needs ``config.json`` and its weights.

Example (a tiny random SegFormer saved to a temporary directory)::

    SegformerForSemanticSegmentation(SegformerConfig(num_labels=8, ...)).save_pretrained(d)
    module, info = load_segformer(Path(d))
    module(torch.zeros(1, 3, 64, 64)).shape  # (1, 8, 64, 64)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.runtimes.errors import ModelLoadError, UsageError, one_line, require

__all__ = ["PREFIX", "SegformerAdapter", "load_segformer"]

PREFIX = "hf-seg:"
ARCHITECTURE = "SegformerForSemanticSegmentation"


class SegformerAdapter(nn.Module):
    """(N, 3, H, W) images -> (N, num_labels, H, W) logits of a SegFormer."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=image).logits
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def load_segformer(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The adapter over the directory's model (eval mode) and what the manifest records of it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"--model {PREFIX}{directory}: no such directory")
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{PREFIX}{directory}: no config.json (not a Hugging Face model directory)")
    transformers = require("transformers", "slm")
    transformers.utils.logging.disable_progress_bar()
    try:
        model = transformers.SegformerForSemanticSegmentation.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:
        first = one_line(exc)
        raise ModelLoadError(f"{PREFIX}{directory}: transformers cannot load it as {ARCHITECTURE}: {first}") from exc
    config = model.config
    info = {"model": f"{PREFIX}{directory}", "architecture": ARCHITECTURE, "num_labels": int(config.num_labels),
            "hidden_sizes": list(config.hidden_sizes), "depths": list(config.depths)}
    return SegformerAdapter(model.eval()).eval(), info
