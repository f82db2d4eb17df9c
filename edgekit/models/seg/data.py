"""A procedural segmentation data set (numpy only, nothing downloads): scenes of textured shapes.

Each scene is a lit, noisy, textured background with 2-6 objects painted over each other (painter's
order: a later object occludes an earlier one, in the image and in the label map). An object's class
is its shape alone (disc, rectangle, triangle, ring, star, cross, crescent); its colour, texture
(plain, stripes, checker, speckle), size, rotation and aspect are random for every class, so the
model has to read the outline. Geometry lives in unit coordinates, so a scene renders at any
resolution. Scene ``i`` of a split is drawn from ``SeedSequence([split, seed, i])``: the same whatever
``n`` is, and train and val never share one.

Example:
    >>> images, labels = make_scenes(4, 32, split="val", seed=0)
    >>> images.shape, images.dtype, labels.shape, labels.dtype
    ((4, 3, 32, 32), dtype('float32'), (4, 32, 32), dtype('int64'))
    >>> bool((make_scenes(2, 32, split="val")[1] == labels[:2]).all())
    True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgekit.runtimes.errors import UsageError

__all__ = ["NUM_CLASSES", "CLASS_NAMES", "SPLITS", "MEAN", "STD", "make_scenes", "render_scene"]

CLASS_NAMES: tuple[str, ...] = ("background", "disc", "rectangle", "triangle", "ring", "star", "cross", "crescent")
NUM_CLASSES: int = len(CLASS_NAMES)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "calib": 2}  # calib: scenes apart from both (int8 calibration)
MEAN, STD = 0.5, 0.25  # images are (pixel - MEAN) / STD, pixels in [0, 1]

Mask = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _polygon(u: np.ndarray, v: np.ndarray, corners: int) -> np.ndarray:
    """Inside a regular polygon of circumradius 1 (intersection of half-planes)."""
    inside = np.ones(u.shape, bool)
    apothem = np.cos(np.pi / corners)
    for k in range(corners):
        angle = 2 * np.pi * (k + 0.5) / corners
        inside &= u * np.cos(angle) + v * np.sin(angle) <= apothem
    return inside


def _rectangle(u, v, rng):
    return (np.abs(u) <= 1.0) & (np.abs(v) <= rng.uniform(0.35, 0.8))


def _star(u, v, rng):
    points = 5
    theta = np.arctan2(v, u)
    rho = np.hypot(u, v)
    spike = np.abs(((theta * points / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a tip, 0 between tips
    return rho <= 0.42 + 0.58 * spike ** 1.5


def _cross(u, v, rng):
    arm = rng.uniform(0.22, 0.36)
    return ((np.abs(u) <= arm) & (np.abs(v) <= 1)) | ((np.abs(v) <= arm) & (np.abs(u) <= 1))


def _crescent(u, v, rng):
    shift = rng.uniform(0.35, 0.55)
    return (u * u + v * v <= 1) & ((u - shift) ** 2 + v * v > 0.8 ** 2)


_SHAPES: tuple[Mask, ...] = (
    lambda u, v, rng: u * u + v * v <= 1,
    _rectangle,
    lambda u, v, rng: _polygon(u, v, 3),
    lambda u, v, rng: (u * u + v * v <= 1) & (u * u + v * v >= rng.uniform(0.3, 0.5)),
    _star,
    _cross,
    _crescent,
)
assert len(_SHAPES) == NUM_CLASSES - 1, "one shape per object class"


def _texture(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A texture pattern in [0, 1] over the object's own coordinates."""
    kind = rng.integers(4)
    if kind == 0:
        return np.full(u.shape, 0.5)
    if kind == 1:
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 6)
        return 0.5 + 0.5 * np.sign(np.sin(freq * np.pi * (u * np.cos(angle) + v * np.sin(angle))))
    if kind == 2:
        freq = rng.uniform(1.5, 4)
        return ((np.floor(freq * (u + 2)) + np.floor(freq * (v + 2))) % 2).astype(np.float64)
    return rng.uniform(0, 1, u.shape)


def _background(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(3, H, W): a colour gradient with a texture of its own (clutter the model must ignore)."""
    c0, c1 = rng.uniform(0.1, 0.9, (2, 3, 1, 1))
    angle = rng.uniform(0, 2 * np.pi)
    t = (x * np.cos(angle) + y * np.sin(angle) + 1.5) / 3
    texture = _texture(x * 3, y * 3, rng)
    return c0 * (1 - t) + c1 * t + rng.uniform(0.0, 0.25) * (texture - 0.5)


def render_scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene from ``rng``: pixels (3, size, size) in [0, 1] and labels (size, size).

    Example:
        >>> image, label = render_scene(16, np.random.default_rng(0))
        >>> image.shape, label.shape, bool(0.0 <= image.min() <= image.max() <= 1.0)
        ((3, 16, 16), (16, 16), True)
    """
    grid = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(grid, grid, indexing="ij")
    image = _background(x, y, rng)
    label = np.zeros((size, size), np.int64)
    for _ in range(rng.integers(2, 7)):
        cls = int(rng.integers(1, NUM_CLASSES))
        cx, cy = rng.uniform(0.1, 0.9, 2)
        radius = rng.uniform(0.08, 0.3)
        stretch = rng.uniform(0.8, 1.25)
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = (x - cx) / radius, (y - cy) / radius
        u = (dx * np.cos(angle) + dy * np.sin(angle)) * stretch
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / stretch
        mask = _SHAPES[cls - 1](u, v, rng)
        colour = rng.uniform(0.0, 1.0, (3, 1, 1))
        contrast = rng.uniform(0.1, 0.45)
        pattern = colour + contrast * (_texture(u, v, rng) - 0.5)
        image = np.where(mask, pattern, image)
        label[mask] = cls
    angle = rng.uniform(0, 2 * np.pi)  # lighting: a gradient of brightness across the scene
    light = 1 + rng.uniform(0, 0.5) * ((x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle))
    image = image * light + rng.normal(0, rng.uniform(0.01, 0.08), image.shape)
    return np.clip(image, 0, 1), label


def make_scenes(n: int, size: int = 64, *, split: str = "val", seed: int = 0,
                first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes of ``split`` at ``size`` x ``size``: images float32 (n, 3, size, size), normalised
    for the models ((pixel - MEAN) / STD), and labels int64 (n, size, size) in [0, NUM_CLASSES).

    Example:
        >>> make_scenes(1, 8, split="test")
        Traceback (most recent call last):
        ...
        edgekit.runtimes.errors.UsageError: split 'test' is not a split of the segmentation scenes; expected one of train, val, calib
    """
    if split not in SPLITS:
        raise UsageError(f"split {split!r} is not a split of the segmentation scenes; expected one of {', '.join(SPLITS)}")
    if n < 0 or size < 1 or first < 0:
        raise UsageError(f"make_scenes: n and first must be >= 0 and size >= 1, got n={n}, first={first}, size={size}")
    images = np.empty((n, 3, size, size), np.float32)
    labels = np.empty((n, size, size), np.int64)
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([SPLITS[split], seed, first + i]))
        pixels, labels[i] = render_scene(size, rng)
        images[i] = (pixels - MEAN) / STD
    return images, labels
