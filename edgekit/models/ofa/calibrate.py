"""BatchNorm recalibration of a materialized subnet (once-for-all's recipe).

A subnet cut from a supernet inherits running statistics gathered over many different subnets; they
are wrong for it. Reset them and re-estimate on a few hundred images: every BatchNorm in train mode with
``momentum=None`` (cumulative average over batches), no gradients; then back to eval mode.

Example:
    >>> import torch
    >>> from edgekit.models.ofa import build_supernet, materialize, smallest
    >>> net = build_supernet("ofa-mbv3-shapes")
    >>> sub = materialize(net, smallest(net.space))
    >>> _ = recalibrate_bn(sub, torch.rand(64, 3, 32, 32), batch_size=32)
    >>> sub.training, int(sub.stem.bn.num_batches_tracked)
    (False, 2)
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from edgekit.runtimes.errors import UsageError

__all__ = ["recalibrate_bn"]


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[0] == 0:
            raise UsageError(f"calibration images must be a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
        return images.split(batch_size)
    return images


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images, batch_size: int = 64) -> nn.Module:
    """Re-estimate every BatchNorm's running mean/var of ``model`` from ``images``; returns it in eval mode.

    ``images``: a tensor or numpy array (N, C, H, W), or an iterable of such batches. The BN momenta are
    restored afterwards; other layers (dropout) run in eval mode, so only the statistics change.

    Example:
        >>> import torch
        >>> bn_net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
        >>> _ = recalibrate_bn(bn_net, torch.rand(10, 3, 8, 8) + 5.0, batch_size=5)
        >>> bool(bn_net[1].running_mean.abs().sum() > 0)
        True
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    try:
        for batch in _batches(images, batch_size):
            model(batch.to(device, torch.float32))
            seen += batch.shape[0]
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise UsageError("recalibrate_bn got no calibration images")
    return model
