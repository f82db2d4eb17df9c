"""Reference architectures of the models in the published device measurements (targets/truth), in plain
torch (no torchvision), each checked against its published parameter count.

They carry random weights: they exist to be exported and costed (op counts, MACs), not to classify.

Example:
    >>> sorted(REFERENCE_MODELS)
    ['mobilenet_v1', 'mobilenet_v2', 'mobilenet_v3_large', 'resnet18', 'resnet50']
    >>> REFERENCE_MODELS["resnet50"].published_params_m
    25.56
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .mobilenet_v1 import mobilenet_v1
from .mobilenet_v2 import mobilenet_v2
from .mobilenet_v3 import mobilenet_v3_large
from .resnet import resnet18, resnet50

__all__ = ["ReferenceModel", "REFERENCE_MODELS"]


@dataclass(frozen=True)
class ReferenceModel:
    """A builder and the parameter count (millions, 1000 classes) its paper / torchvision publishes."""

    build: Callable[[], nn.Module]
    published_params_m: float


REFERENCE_MODELS: dict[str, ReferenceModel] = {
    "resnet18": ReferenceModel(resnet18, 11.69),
    "resnet50": ReferenceModel(resnet50, 25.56),
    "mobilenet_v1": ReferenceModel(mobilenet_v1, 4.23),
    "mobilenet_v2": ReferenceModel(mobilenet_v2, 3.50),
    "mobilenet_v3_large": ReferenceModel(mobilenet_v3_large, 5.48),
}
