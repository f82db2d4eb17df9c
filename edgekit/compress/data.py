"""The labelled images ``edgekit compress`` fine-tunes, calibrates and scores on: a user's ``.npz``
(``images`` float (N, C, H, W), ``labels`` integer (N, H, W)) checked strictly, or the segmenter
family's procedural scenes (:mod:`edgekit.models.seg.data`).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "eval.npz"
    >>> np.savez(f, images=np.zeros((2, 3, 8, 8), np.float32), labels=np.full((2, 8, 8), 5))
    >>> data = load_npz(f, "--eval-data")
    >>> data.images.shape, data.labels.dtype
    ((2, 3, 8, 8), dtype('int64'))
    >>> check_against(data, (3, 8, 8), 4)
    Traceback (most recent call last):
    ...
    edgekit.runtimes.errors.UsageError: --eval-data ...eval.npz: labels go up to 5 but the model outputs 4 classes (labels must be in [0, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekit.runtimes.errors import UsageError
from edgekit.runtimes.limits import load_npz as read_npz

__all__ = ["SegData", "load_npz", "check_against", "family_scenes"]


@dataclass(frozen=True)
class SegData:
    images: np.ndarray  # float32 (N, C, H, W)
    labels: np.ndarray | None  # int64 (N, H, W); None for calibration images
    where: str  # "--eval-data FILE" or a description of the family's data, for messages and the report

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_npz(path: Path, option: str, *, labels: bool = True) -> SegData:
    """Read and check ``option``'s ``.npz``: ``images`` (and ``labels`` when asked), non-empty, of the
    right rank and dtype, one label map per image, no negative label."""
    where = f"{option} {path}"
    arrays = read_npz(path, option)  # no pickles; the size limit holds for what the archive expands to
    needed = ("images", "labels") if labels else ("images",)
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise UsageError(f"{where}: no array {missing[0]!r} (has {sorted(arrays) or 'none'}; expected {' and '.join(needed)})")
    images = arrays["images"]
    if images.ndim != 4:
        raise UsageError(f"{where}: images shaped {tuple(images.shape)}: expected (N, C, H, W)")
    if images.shape[0] == 0:
        raise UsageError(f"{where}: images is empty (0 samples)")
    if not np.issubdtype(images.dtype, np.floating):
        raise UsageError(f"{where}: images are {images.dtype}: expected float32 (normalized as the model expects)")
    label_maps = None
    if labels:
        label_maps = arrays["labels"]
        if label_maps.shape != (images.shape[0], *images.shape[2:]):
            raise UsageError(f"{where}: labels shaped {tuple(label_maps.shape)}: expected one (H, W) map per image, "
                             f"{(images.shape[0], *images.shape[2:])}")
        if not np.issubdtype(label_maps.dtype, np.integer):
            raise UsageError(f"{where}: labels are {label_maps.dtype}: expected integer class ids")
        if label_maps.min() < 0:
            raise UsageError(f"{where}: labels go down to {label_maps.min()}: expected class ids >= 0")
        label_maps = label_maps.astype(np.int64)
    return SegData(images.astype(np.float32), label_maps, where)


def check_against(data: SegData, sample_shape: Sequence[int | str], num_classes: int) -> None:
    """The images fit the model's input (``sample_shape``: one sample's axes, names take any size) and the
    labels its class count."""
    shape = tuple(data.images.shape[1:])
    if len(shape) != len(sample_shape) or any(isinstance(w, int) and w != g for w, g in zip(sample_shape, shape)):
        raise UsageError(f"{data.where}: images shaped (N, {', '.join(map(str, shape))}): the model takes "
                         f"(N, {', '.join(map(str, sample_shape))})")
    if data.labels is not None and data.labels.max() >= num_classes:
        raise UsageError(f"{data.where}: labels go up to {data.labels.max()} but the model outputs {num_classes} "
                         f"classes (labels must be in [0, {num_classes}))")


def family_scenes(n: int, size: int, split: str, seed: int = 0) -> SegData:
    """``n`` procedural scenes of the segmenter family's data set (``split``: train, val or calib)."""
    from edgekit.models.seg.data import make_scenes

    images, labels = make_scenes(n, size, split=split, seed=seed)
    return SegData(images, labels, f"{n} {split} scenes of the seg data set at {size}x{size}")
