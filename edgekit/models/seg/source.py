"""``--model seg-simple`` / ``seg-vwformer`` / ``hf-seg:DIR``: segmenters as exportable models.

The built-ins are the mobile preset with the simple head (shipped weights, seg_simple.pt) or the
VWFormer head (seg_vwformer.pt); ``hf-seg:DIR`` is a local SegFormer (:mod:`.hf`). Every one takes
one ``image`` (N, 3, H, W), 64 x 64 unless ``--input-shape`` says otherwise (H, W multiples of 32 for
the built-ins), and returns ``logits`` (N, classes, H, W). The family's data: train-split scenes
calibrate int8, val-split scenes with labels score held-out mIoU (when the model's classes are the
data set's); ``provenance`` carries the weights' training record.

Example:
    >>> source = seg_source(ModelRequest("seg-simple"))
    >>> source.task, source.inputs[0].shape, source.output_names
    ('segmentation', ('batch', 3, 64, 64), ('logits',))
    >>> round(100 * source.provenance["training"]["val_miou"], 1) > 50
    True
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.exporters.base import ExportGraph
from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.spec import TensorSpec

from ..source import FamilyData, ModelRequest, ModelSource
from .data import CLASS_NAMES, NUM_CLASSES, make_scenes

__all__ = ["seg_source", "BUILTINS", "DEFAULT_SIZE", "HELD_OUT_SCENES", "weights_path", "load_builtin"]

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
BUILTINS = {"seg-simple": ("mobile", "simple", "seg_simple.pt"), "seg-vwformer": ("mobile", "vwformer", "seg_vwformer.pt")}
DEFAULT_SIZE = 64
HELD_OUT_SCENES = 256  # val scenes scored by the export's accuracy check
_BATCH = 32


def weights_path(name: str) -> Path:
    """The shipped weights of built-in ``name`` (the file may be absent for an untrained head)."""
    return WEIGHTS / BUILTINS[name][2]


def load_builtin(name: str):
    """The built-in segmenter ``name`` in eval mode with its shipped weights (random init, seed 0, when
    none are shipped) and its training record (None without weights)."""
    import torch

    from .model import SEG_PRESETS, build_segmenter

    preset, head, _ = BUILTINS[name]
    torch.manual_seed(0)
    net = build_segmenter(replace(SEG_PRESETS[preset], head=head))
    path = weights_path(name)
    if not path.is_file():
        return net.eval(), None
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval(), json.loads(path.with_suffix(".json").read_text())


def _shape(request: ModelRequest, name: str) -> tuple[int, int, int, int]:
    shape = tuple(request.input_shape or request.input_shapes.get("image", ()) or (1, 3, DEFAULT_SIZE, DEFAULT_SIZE))
    if len(shape) != 4 or shape[1] != 3:
        raise UsageError(f"--input-shape {','.join(map(str, shape))}: {name} takes one image (N, 3, H, W)")
    if request.dynamic_hw:
        raise UsageError(f"--dynamic hw: {name} is exported at a fixed height and width; pass --input-shape 1,3,H,W")
    return shape  # type: ignore[return-value]


def _data(size: int, name: str, num_classes: int) -> FamilyData:
    def calibration(n: int) -> list[dict[str, np.ndarray]]:
        return [{"image": image[None]} for image in make_scenes(n, size, split="train", seed=0)[0]]

    def held_out() -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        images, labels = make_scenes(HELD_OUT_SCENES, size, split="val", seed=0)
        return [{"image": images[i:i + _BATCH]} for i in range(0, len(images), _BATCH)], labels

    labelled = num_classes == NUM_CLASSES  # the scenes' labels mean nothing to a model of other classes
    return FamilyData(int8_calibration=calibration, held_out=held_out if labelled else None)


def seg_source(request: ModelRequest) -> ModelSource:
    """Resolve a segmenter reference into one graph ``image`` -> ``logits`` with the family's data."""
    import torch

    ref = request.ref or ""
    if ref.startswith("hf-seg:"):
        from .hf import PREFIX, load_segformer

        net, provenance = load_segformer(Path(ref[len(PREFIX):]))
        num_classes, extra = provenance["num_labels"], {"num_classes": provenance["num_labels"]}
    else:
        from .model import analytic_macs, check_size

        net, record = load_builtin(ref)
        config = net.config
        num_classes = config.num_classes
        provenance: dict[str, Any] = {"model": ref, "weights": "random init, seed 0 (no shipped weights)"}
        if record is not None:
            provenance.update(weights=f"edgekit/models/weights/{record['file']}", training={
                "command": record["training_command"], "seed": record["seed"], "steps": record["steps"],
                "val_miou": record["val"]["miou"], "val_scenes": record["val"]["scenes"]})
    shape = _shape(request, ref)
    if not ref.startswith("hf-seg:"):
        check_size(shape[2:])
        extra = {"num_classes": num_classes, "macs": analytic_macs(config, shape[2]) if shape[2] == shape[3] else None,
                 "params": sum(p.numel() for p in net.parameters())}
    extra["classes"] = list(CLASS_NAMES) if num_classes == NUM_CLASSES else None
    example = torch.from_numpy(make_scenes(1, shape[2], split="train", seed=0)[0]) if shape[2] == shape[3] else \
        torch.randn(1, 3, *shape[2:], generator=torch.Generator().manual_seed(0))
    spec = TensorSpec("image", ("batch", 3, shape[2], shape[3]))
    graph = ExportGraph("model", net, (spec,), (example,), ("logits",))
    data = _data(shape[2], ref, num_classes) if shape[2] == shape[3] else FamilyData()
    return ModelSource(ref, {"model": graph}, "segmentation", provenance=provenance, extra=extra, data=data)
