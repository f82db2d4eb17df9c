"""``--model ofa-mbv3``: a once-for-all subnet as an exportable model.

The supernet comes from ``--checkpoint`` (a once-for-all release file or an edgekit checkpoint; its
space is detected from the file unless ``--space`` names it) or the shipped trained supernet. The
subnet comes from ``--subnet`` (JSON text or a .json file in once-for-all's ``{"ks", "e", "d", "r"}``
form); the default is the largest subnet. BatchNorm statistics are recalibrated (the once-for-all
recipe) on ``--bn-data`` images when given, else on the family's own images (the shipped shapes spaces);
``extra["bn_recalibration"]`` says which (the family's registry record says that it takes ``--bn-data``).
The family's images also feed int8 calibration (``FamilyData.int8_calibration``) unless ``--calib-data``
is given (read by the pipeline; it never touches BatchNorm), and its labelled held-out images
(``FamilyData.held_out``) let the pipeline measure each step's accuracy.

Example (with the shipped supernet)::

    source = ofa_source(ModelRequest("ofa-mbv3", subnet='{"ks": [3, ...], "e": [...], "d": [...], "r": 48}'))
    source.extra["macs"], source.extra["bn_recalibration"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError

from .source import FamilyData, ModelRequest, ModelSource

__all__ = ["ofa_source", "checkpoint_space", "SHIPPED_SPACE", "BN_IMAGES"]

SHIPPED_SPACE = "ofa-mbv3-shapes"
BN_IMAGES = 512  # images BatchNorm statistics are recalibrated on
_DETECT_ORDER = ("ofa-mbv3-shapes", "ofa-mbv3-w1.0", "ofa-mbv3-w1.2", "ofa-mbv3-tiny")
_SPACES_WITH_DATA = ("ofa-mbv3-shapes", "ofa-mbv3-tiny")  # trained on (or sized for) the procedural shapes


def _supernet(request: ModelRequest):
    from edgekit.models.ofa import CheckpointError, build_supernet

    if request.space:
        return build_supernet(request.space, request.checkpoint or "default")
    if request.checkpoint is None:
        return build_supernet(SHIPPED_SPACE, "default")
    errors = []
    for name in _DETECT_ORDER:  # the space whose tensors the file fits
        try:
            return build_supernet(name, request.checkpoint)
        except CheckpointError as exc:
            errors.append(f"{name}: {exc}")
    raise CheckpointError(f"{request.checkpoint}: fits no known space ({errors[0]}); pass --space to see its mismatches")


def checkpoint_space(checkpoint: Path) -> str:
    """The name of the space whose supernet ``checkpoint`` loads into (``edgekit select --checkpoint``)."""
    return _supernet(ModelRequest("ofa-mbv3", checkpoint=Path(checkpoint))).space.name


def _subnet_config(request: ModelRequest, space):
    from edgekit.models.ofa import SubnetConfig, largest

    if request.subnet is None:
        return largest(space)
    text = request.subnet.strip()
    if text.startswith("{"):
        return SubnetConfig.from_json(text, space)
    return SubnetConfig.from_file(Path(text), space)


def _has_data(space) -> bool:
    return space.name in _SPACES_WITH_DATA


def _family_images(space, resolution: int, n: int) -> tuple[np.ndarray | None, str]:
    """The family's own unlabelled images (the data's calibration seed, disjoint from training and held-out
    images), or None for spaces without data; they recalibrate BatchNorm and calibrate int8."""
    if not _has_data(space):
        return None, ""
    from edgekit.models.ofa import calibration_images

    return calibration_images(n, resolution), "procedural shapes (calibration seed)"


def _bn_images(request: ModelRequest, space, resolution: int, n: int) -> tuple[np.ndarray | None, str]:
    """BatchNorm recalibration images: ``--bn-data`` when given, else the family's own images."""
    if request.bn_data is None:
        return _family_images(space, resolution, n)
    from .source import load_samples

    images = load_samples(Path(request.bn_data), space.input_spec(resolution), "--bn-data")
    return images[:n], f"--bn-data {Path(request.bn_data).name}"


def ofa_source(request: ModelRequest) -> ModelSource:
    """Materialize the requested subnet, recalibrate its BatchNorm, and describe it for export."""
    import torch

    from edgekit.models.ofa import count_macs, count_params, materialize, recalibrate_bn
    from edgekit.runtimes.bundle import sha256_file

    supernet = _supernet(request)
    space = supernet.space
    config = _subnet_config(request, space)
    if request.input_shape is not None and tuple(request.input_shape[1:]) != (space.in_channels, config.r, config.r):
        raise UsageError(f"--input-shape {request.input_shape} disagrees with the subnet's resolution {config.r}")
    module = materialize(supernet, config)
    images, data_name = _bn_images(request, space, config.r, BN_IMAGES)
    if images is not None:
        recalibrate_bn(module, torch.from_numpy(images))
    spec = space.input_spec(config.r)
    checkpoint = request.checkpoint or _shipped(space.name)
    extra: dict[str, Any] = {
        "subnet": config.to_dict(), "space": space.name, "macs": count_macs(config, space),
        "params": count_params(config, space),
        "checkpoint": str(checkpoint) if checkpoint else "random init",
        "checkpoint_sha256": sha256_file(Path(checkpoint)) if checkpoint else None,
        "bn_recalibration": f"{len(images)} images of {data_name}" if images is not None
        else "none (no --bn-data and no family data)",
    }
    has_data = _has_data(space)
    if images is not None:
        example = torch.from_numpy(images[:1])
    else:
        example = torch.randn(1, space.in_channels, config.r, config.r, generator=torch.Generator().manual_seed(0))
    graph = ExportGraph("model", module.eval(), (spec,), (example,), (space.output_spec().name,))
    data = FamilyData(
        int8_calibration=(lambda n: [{spec.name: img[None]} for img in _family_images(space, config.r, n)[0]])
        if has_data else None,
        held_out=(lambda: _held_out(space, config.r)) if has_data else None,
    )
    return ModelSource(f"ofa-mbv3 ({space.name})", {"model": graph}, "classification",
                       provenance={"model": "ofa-mbv3", "space": space.name}, extra=extra, data=data)


def _shipped(space_name: str):
    from edgekit.models.ofa import default_checkpoint

    path = default_checkpoint(space_name)
    return path if path is not None and path.is_file() else None


def _held_out(space, resolution: int, n: int = 512):
    """Labelled held-out images (the held-out seed, disjoint from training and calibration)."""
    from edgekit.models.ofa import make_shapes, resize
    from edgekit.models.ofa.data import HELDOUT_SEED

    images, labels = make_shapes(n, seed=HELDOUT_SEED, size=64)
    images = resize(images, resolution).numpy().astype(np.float32)
    return [{space.input_spec(resolution).name: images[i : i + 64]} for i in range(0, n, 64)], labels.numpy()
