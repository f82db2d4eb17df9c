"""Once-for-all MobileNetV3 family: search spaces, subnet configs, the supernet, checkpoints, training.

Names load lazily, so ``edgekit.models.ofa.SubnetConfig``, the spaces (search spaces for ``edgekit select``),
their block specs and the accuracy predictor need no torch import.

Example:
    >>> import random
    >>> from edgekit.models import ofa
    >>> space = ofa.get_space("ofa-mbv3-shapes")
    >>> cfg = ofa.sample(space, random.Random(0))
    >>> ofa.count_macs(cfg, space) > 0
    True
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "space": ["OFASpace", "SPACE_NAMES", "default_checkpoint", "get_space", "make_divisible", "mbv3_space", "shapes_space", "space_size", "tiny_space"],
    "config": ["SubnetConfig", "SubnetConfigError", "crossover", "largest", "mutate", "sample", "smallest"],
    "cost": ["LayerCost", "count_macs", "count_params", "layer_costs", "model_size_bytes"],
    "specs": ["BlockSpec", "block_ops", "space_blocks", "subnet_blocks"],
    "skeleton": ["OFASkeleton"],
    "predictor": ["AccuracyPredictor", "load_predictor"],
    "supernet": ["OFASubnet", "OFASupernet", "materialize"],
    "checkpoint": [
        "CheckpointError",
        "build_supernet",
        "load_checkpoint",
        "save_checkpoint",
    ],
    "calibrate": ["recalibrate_bn"],
    "randomize": ["randomize_weights"],
    "data": ["CLASSES", "GENERATOR_VERSION", "calibration_images", "make_shapes", "resize", "shape_batches"],
    "train": ["TrainConfig", "train"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekit.models.ofa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
