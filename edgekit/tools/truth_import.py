"""Normalise a file of published device measurements (one JSON object a line, free-text fields as quoted
from their sources) into edgekit's points schema (:mod:`edgekit.targets.truth`), keeping every original
field under ``source``.

This is how ``targets/truth/published.jsonl`` was made from the collected set (see targets/truth/PROVENANCE.md):

    python -m edgekit.tools.truth_import COLLECTED.jsonl targets/truth

Points of devices (or units) edgekit has no profile for go to ``unmodeled.jsonl`` beside it, unchanged.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from edgekit.targets import load_target

__all__ = ["normalise"]

DEVICES = {
    "orin_nano": "jetson-orin-nano", "orin_nx": "jetson-orin-nx", "agx_orin": "jetson-agx-orin",
    "jetson_nano": "jetson-nano", "rpi5": "raspberry-pi-5", "rpi4": "raspberry-pi-4",
    "sd8gen3": "snapdragon-8-gen-3", "coral": "coral-edgetpu",
}
# First match wins: (pattern in the quoted text, edgekit's name).
_RUNTIMES = (("tensorrt", "tensorrt"), ("edge tpu", "edgetpu"), ("tflite", "litert"), ("tensorflow lite", "litert"), ("litert", "litert"),
             ("qnn", "qnn"), ("ncnn", "ncnn"), ("openvino", "openvino"),
             ("pytorch", "pytorch"), ("onnx runtime", "onnxruntime"), ("tensorflow", "tensorflow"))
_UNITS = (("edge tpu", "tpu"), ("npu", "npu"), ("gpu", "gpu"), ("cpu", "cpu"))
_PRECISIONS = (("fp32 weights; fp16 storage", "fp32"), ("int8", "int8"), ("uint8", "int8"), ("fp16", "fp16"),
               ("float", "fp32"), ("fp32", "fp32"))
_MODELS = (("retinanet", "retinanet_resnext50_fpn"), ("ssd-mobilenetv2", "ssd_mobilenet_v2"),
           ("ssd-mobilenetv1", "ssd_mobilenet_v1_0.75"), ("resnet-50", "resnet50"), ("resnet-18", "resnet18"),
           ("mobilenetv1", "mobilenet_v1"), ("mobilenetv2", "mobilenet_v2"), ("mobilenetv3-large", "mobilenet_v3_large"),
           ("shufflenetv2 x0.5", "shufflenet_v2_0.5"), ("shufflenetv2 1.0x", "shufflenet_v2_1.0"),
           ("inception v1", "inception_v1"))


def _first(text: str, table: tuple[tuple[str, str], ...], field: str) -> str:
    low = text.lower()
    for pattern, name in table:
        if pattern in low:
            return name
    raise ValueError(f"{field}: no rule for {text!r}")


def normalise(raw: dict[str, Any]) -> dict[str, Any] | None:
    """One collected point in edgekit's schema, or None for a device (or unit) edgekit has no profile for.

    Example:
        >>> raw = {"device_key": "rpi5", "unit": "CPU", "runtime": "TFLite (via NetsPresso)", "precision": "fp16 TFLite model",
        ...        "batch": 1, "resolution_or_seq": "224x224", "threads": None, "model": "ResNet-18 (NetsPresso)", "ms": 55.27}
        >>> {k: v for k, v in normalise(raw).items() if k != "source"}
        {'target': 'raspberry-pi-5', 'unit': 'cpu', 'runtime': 'litert', 'precision': 'fp16', 'model': 'resnet18', 'resolution': 224, 'batch': 1, 'threads': None, 'ms': 55.27}
    """
    target = DEVICES.get(raw["device_key"])
    if target is None:
        return None
    unit = _first(raw["unit"], _UNITS, "unit")
    if unit not in {u.name for u in load_target(target).units}:
        return None
    size = re.search(r"(\d+)x\d+", raw["resolution_or_seq"])
    return {
        "target": target, "unit": unit,
        "runtime": _first(raw["runtime"], _RUNTIMES, "runtime"),
        "precision": _first(raw["precision"], _PRECISIONS, "precision"),
        "model": _first(raw["model"], _MODELS, "model"), "resolution": int(size.group(1)) if size else None,
        "batch": raw["batch"], "threads": raw["threads"], "ms": raw["ms"], "source": raw,
    }


def main(argv: list[str]) -> None:
    src, out = Path(argv[0]), Path(argv[1])
    modeled, unmodeled = [], []
    for line in src.read_text().splitlines():
        raw = json.loads(line)
        point = normalise(raw)
        (modeled if point else unmodeled).append(json.dumps(point or raw, ensure_ascii=False))
    (out / "published.jsonl").write_text("\n".join(modeled) + "\n")
    (out / "unmodeled.jsonl").write_text("\n".join(unmodeled) + "\n")
    print(f"{len(modeled)} points of modeled devices, {len(unmodeled)} of others")


if __name__ == "__main__":
    main(sys.argv[1:])
