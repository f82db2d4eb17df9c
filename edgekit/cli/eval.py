"""``edgekit eval BUNDLE``: score a segmentation bundle's mIoU through the runtime (numpy only, no torch).

The data: the segmenter family's procedural scenes (``--data val`` or ``train``, ``--samples`` of them
at the bundle's input size) or ``--data FILE.npz`` with ``images`` float (N, 3, H, W) and ``labels``
integer (N, H, W). The bundle's manifest must say ``task: segmentation`` and its first output must be
logits (N, classes, H, W) or a class map (N, H, W).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from edgekit.runtimes.errors import UsageError

from .common import emit, out, table

__all__ = ["register", "evaluate_bundle"]

_SCENE_SPLITS = ("val", "train")


def _data(data: str, samples: int, size: int, num_classes: int) -> tuple[np.ndarray, np.ndarray, str]:
    from edgekit.models.seg.data import NUM_CLASSES, make_scenes

    if data in _SCENE_SPLITS:
        if num_classes != NUM_CLASSES:
            raise UsageError(f"--data {data}: the bundle's model has {num_classes} classes but the scenes have "
                             f"{NUM_CLASSES}; pass --data FILE.npz with labels of its classes")
        images, labels = make_scenes(samples, size, split=data, seed=0)
        return images, labels, f"{samples} {data} scenes at {size}x{size}"
    from edgekit.compress.data import check_against, load_npz

    path = Path(data)
    if path.suffix != ".npz":
        raise UsageError(f"--data {data}: expected val, train or a FILE.npz with arrays images and labels")
    if not path.is_file():
        raise UsageError(f"--data {data}: no such file")
    loaded = load_npz(path, "--data")
    check_against(loaded, (3, size, size), num_classes)
    return loaded.images[:samples], loaded.labels[:samples], f"{min(samples, len(loaded))} samples of {path.name}"


def evaluate_bundle(bundle: Path, *, data: str = "val", samples: int = 256, size: int | None = None,
                    threads: int = 1) -> dict[str, Any]:
    """Run ``bundle`` on the data and return its scores (mIoU, pixel accuracy, per-class IoU, confusion)."""
    import edgekit.runtimes as rt
    from edgekit.models.seg.data import CLASS_NAMES, NUM_CLASSES
    from edgekit.models.seg.metrics import score_outputs

    manifest = rt.read_bundle(bundle, verify=False).manifest if Path(bundle).is_dir() else None
    if manifest is None:
        raise UsageError(f"{bundle}: not a bundle directory (edgekit eval reads the task from its manifest)")
    if manifest.task != "segmentation":
        raise UsageError(f"{bundle}: its manifest's task is {manifest.task!r}, not 'segmentation': edgekit eval "
                         "scores segmenters (an output of logits (N, classes, H, W) or a class map (N, H, W))")
    session = rt.load(bundle, threads=threads)
    if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4:
        raise UsageError(f"{bundle}: inputs {[(s.name, s.shape) for s in session.inputs]}: expected one image (N, 3, H, W)")
    spec = session.inputs[0]
    fixed = spec.shape[2] if isinstance(spec.shape[2], int) else None
    if size is not None and fixed is not None and size != fixed:
        raise UsageError(f"--size {size}: the bundle's input {spec.name!r} is fixed at {spec.shape[2]}x{spec.shape[3]}")
    size = size or fixed
    if size is None:
        raise UsageError(f"{bundle}: input {spec.name!r} has a dynamic height; pass --size")
    num_classes = int(manifest.extra.get("num_classes") or NUM_CLASSES)
    images, labels, described = _data(data, samples, size, num_classes)
    batch = spec.shape[0] if isinstance(spec.shape[0], int) else 16
    outputs = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)]) if len(chunk) < batch else chunk
        name, value = next(iter(session.run({spec.name: padded.astype(np.float32)}).items()))
        outputs.append({name: value[:len(chunk)]})
    result = score_outputs(outputs, labels, num_classes)
    names = list(CLASS_NAMES) if num_classes == NUM_CLASSES else [f"class {i}" for i in range(num_classes)]
    return {"bundle": str(bundle), "model": manifest.name, "format": manifest.format, "precision": manifest.precision,
            "data": described, "samples": result.samples, "size": size, "threads": threads, "miou": result.miou,
            "pixel_accuracy": result.pixel_accuracy, "classes": names,
            "per_class_iou": result.to_json()["per_class_iou"], "confusion": result.confusion.tolist()}


def eval_command(
    bundle: Path = typer.Argument(..., help="A segmentation bundle directory."),
    data: str = typer.Option("val", "--data", help="val or train (the family's scenes), or FILE.npz (images, labels)."),
    samples: int = typer.Option(256, "--samples", min=1, help="How many samples to score."),
    size: int = typer.Option(None, "--size", min=1, help="Scene size (default: the bundle's input height)."),
    threads: int = typer.Option(1, "--threads", min=1, help="Runtime intra-op threads."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score a segmentation bundle: mIoU, pixel accuracy and per-class IoU, run through edgekit.runtimes."""
    report = evaluate_bundle(bundle, data=data, samples=samples, size=size, threads=threads)

    def render() -> None:
        out.print(f"{report['model']} ({report['format']} {report['precision']}): mIoU {100 * report['miou']:.2f}, "
                  f"pixel accuracy {100 * report['pixel_accuracy']:.2f}% on {report['data']}")
        rows = [[name, "-" if iou is None else f"{100 * iou:.2f}"] for name, iou in zip(report["classes"], report["per_class_iou"])]
        out.print(table(None, ["class", "IoU"], rows))

    emit(report, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
