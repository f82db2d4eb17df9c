"""Procedural 10-class shape images: seeded, deterministic, nothing to download.

Each image shows one filled shape (the label) with random position, size, rotation, slight stretch,
striped texture and colours on a gradient background, behind which sit small distractor blobs, with a
thin line across and Gaussian noise on top. Pure torch ops, vectorised over a chunk of images.

Images come in chunks of :data:`CHUNK`; chunk ``i`` of stream ``seed`` is drawn from its own generator,
so any prefix of a stream is the same whatever the batch size, and ranks of a distributed run can read
disjoint chunks. ``(seed, GENERATOR_VERSION, device type)`` fixes the pixels: CPU and CUDA streams differ.

Example:
    >>> images, labels = make_shapes(8, seed=1, size=32)
    >>> tuple(images.shape), images.dtype, int(labels.max()) < len(CLASSES)
    ((8, 3, 32, 32), torch.float32, True)
    >>> torch.equal(make_shapes(8, seed=1, size=32)[0], images)
    True
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

__all__ = [
    "CALIBRATION_SEED",
    "CHUNK",
    "CLASSES",
    "GENERATOR_VERSION",
    "HELDOUT_SEED",
    "TRAIN_SEED",
    "calibration_images",
    "make_shapes",
    "resize",
    "shape_batches",
]

GENERATOR_VERSION = 1
CLASSES = ("disc", "square", "triangle", "cross", "ring", "star", "hexagon", "crescent", "bar", "half_disc")
CHUNK = 256
TRAIN_SEED, HELDOUT_SEED, CALIBRATION_SEED = 0, 1, 2


def _box(x: torch.Tensor, y: torch.Tensor, hx: float, hy: float) -> torch.Tensor:
    qx, qy = x.abs() - hx, y.abs() - hy
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.minimum(torch.maximum(qx, qy), torch.zeros_like(qx))


def _polygon(x: torch.Tensor, y: torch.Tensor, sides: int, apothem: float, phase: float) -> torch.Tensor:
    d = None
    for k in range(sides):
        a = phase + 2 * math.pi * k / sides
        v = x * math.cos(a) + y * math.sin(a) - apothem
        d = v if d is None else torch.maximum(d, v)
    return d


def _shape_sdfs(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Approximate signed distance (negative inside) of every class at shape coordinates ``(x, y)``."""
    r = torch.sqrt(x * x + y * y)
    phi = torch.atan2(y, x)
    sdfs = [
        r - 0.95,  # disc
        _box(x, y, 0.78, 0.78),  # square
        _polygon(x, y, 3, 0.5, math.pi / 2),  # triangle (circumradius 1)
        torch.minimum(_box(x, y, 0.95, 0.28), _box(x, y, 0.28, 0.95)),  # cross
        (r - 0.72).abs() - 0.24,  # ring
        r - (0.62 + 0.36 * torch.cos(5 * phi)),  # star
        _polygon(x, y, 6, 0.85, 0.0),  # hexagon
        torch.maximum(r - 0.95, 0.75 - torch.sqrt((x - 0.5) ** 2 + y * y)),  # crescent
        _box(x, y, 1.0, 0.32),  # bar
        torch.maximum(r - 1.0, -y - 0.1),  # half disc
    ]
    return torch.stack(sdfs)


def _chunk(seed: int, index: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed((seed * 1_000_003 + index) * 17 + GENERATOR_VERSION)
    n = CHUNK

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen, device=device)

    labels = (torch.arange(n, device=device) % len(CLASSES))[torch.randperm(n, generator=gen, device=device)]
    axis = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    gx, gy = gx.expand(n, size, size), gy.expand(n, size, size)
    pixel = 2.0 / size

    # background: gradient between two colours of one luminance band; foreground in the other band
    dark_bg = (rand(n, 1, 1, 1) < 0.5).float()
    bg_a = rand(n, 3, 1, 1) * 0.45 + 0.55 * (1 - dark_bg)
    bg_b = (bg_a + (rand(n, 3, 1, 1) - 0.5) * 0.3).clamp(0, 1)
    theta_g = rand(n, 1, 1) * 2 * math.pi
    t = ((gx * torch.cos(theta_g) + gy * torch.sin(theta_g)) * 0.5 + 0.5).unsqueeze(1)
    image = bg_a * (1 - t) + bg_b * t
    fg = rand(n, 3, 1, 1) * 0.45 + 0.55 * dark_bg
    contrast = rand(n, 1, 1, 1) * 0.6 + 0.4
    bg_mean = image.mean((2, 3), keepdim=True)
    fg = bg_mean + contrast * (fg - bg_mean)

    # distractor blobs behind the shape
    for _ in range(3):
        cx, cy = rand(n, 1, 1) * 2 - 1, rand(n, 1, 1) * 2 - 1
        rad = rand(n, 1, 1) * 0.12 + 0.05
        dist = torch.sqrt((gx - cx) ** 2 + ((gy - cy) * (rand(n, 1, 1) + 0.5)) ** 2) - rad
        alpha = (0.5 - dist / pixel).clamp(0, 1).unsqueeze(1)
        image = image * (1 - alpha) + rand(n, 3, 1, 1) * alpha

    # the labelled shape: pose, stretch, stripes
    cx, cy = (rand(n, 1, 1) - 0.5) * 0.7, (rand(n, 1, 1) - 0.5) * 0.7
    scale = rand(n, 1, 1) * 0.3 + 0.3
    rot = rand(n, 1, 1) * 2 * math.pi
    stretch = rand(n, 1, 1) * 0.3 + 0.85
    dx, dy = (gx - cx) / scale, (gy - cy) / scale
    sx = (dx * torch.cos(rot) + dy * torch.sin(rot)) / stretch
    sy = (-dx * torch.sin(rot) + dy * torch.cos(rot)) * stretch
    sdf = _shape_sdfs(sx, sy).gather(0, labels.view(1, n, 1, 1).expand(1, n, size, size))[0]
    alpha = (0.5 - sdf * scale / pixel).clamp(0, 1).unsqueeze(1)
    freq = rand(n, 1, 1) * 6 + 2
    stripe_dir = rand(n, 1, 1) * 2 * math.pi
    stripes = torch.sin(freq * (sx * torch.cos(stripe_dir) + sy * torch.sin(stripe_dir)) * math.pi)
    texture = 1 + (rand(n, 1, 1) * 0.3 * stripes).unsqueeze(1)
    image = image * (1 - alpha) + (fg * texture).clamp(0, 1) * alpha

    # a thin line in front
    a = rand(n, 1, 1) * math.pi
    offset = rand(n, 1, 1) * 1.6 - 0.8
    dist = (gx * torch.cos(a) + gy * torch.sin(a) - offset).abs() - pixel * (rand(n, 1, 1) * 1.0 + 0.5)
    alpha = ((0.5 - dist / pixel).clamp(0, 1) * (rand(n, 1, 1) < 0.7).float()).unsqueeze(1)
    image = image * (1 - alpha) + rand(n, 3, 1, 1) * alpha

    sigma = rand(n, 1, 1, 1) * 0.08 + 0.02
    noise = torch.randn((n, 3, size, size), generator=gen, device=device)
    image = (image + sigma * noise).clamp(0, 1)
    return image, labels


def make_shapes(
    n: int, seed: int = TRAIN_SEED, size: int = 64, device: str | torch.device = "cpu", first_chunk: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of stream ``seed`` (from chunk ``first_chunk``): float32 in [0, 1], int64 labels.

    Example:
        >>> x, y = make_shapes(300, seed=1, size=32)
        >>> tuple(x.shape), torch.equal(make_shapes(10, seed=1, size=32)[1], y[:10])
        ((300, 3, 32, 32), True)
    """
    if n < 1 or size < 8:
        from edgekit.runtimes.errors import UsageError

        raise UsageError(f"make_shapes needs n >= 1 and size >= 8, got n={n}, size={size}")
    device = torch.device(device)
    chunks = [_chunk(seed, first_chunk + i, size, device) for i in range(-(-n // CHUNK))]
    return torch.cat([c[0] for c in chunks])[:n], torch.cat([c[1] for c in chunks])[:n]


def shape_batches(
    batch_size: int,
    seed: int = TRAIN_SEED,
    size: int = 64,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of fresh batches; rank ``r`` of ``world`` reads chunks ``r, r + world, ...``.

    Example:
        >>> batches = shape_batches(16, seed=3, size=32)
        >>> x, y = next(batches)
        >>> tuple(x.shape), tuple(y.shape)
        ((16, 3, 32, 32), (16,))
    """
    index, buf_x, buf_y = rank, [], []
    have = 0
    while True:
        while have < batch_size:
            x, y = _chunk(seed, index, size, torch.device(device))
            buf_x.append(x)
            buf_y.append(y)
            have += x.shape[0]
            index += world
        x, y = torch.cat(buf_x), torch.cat(buf_y)
        yield x[:batch_size], y[:batch_size]
        buf_x, buf_y, have = [x[batch_size:]], [y[batch_size:]], x.shape[0] - batch_size


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of a batch to ``resolution`` x ``resolution`` (no-op if equal).

    Example:
        >>> tuple(resize(torch.zeros(2, 3, 64, 64), 40).shape)
        (2, 3, 40, 40)
    """
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def calibration_images(n: int = 256, resolution: int = 64, seed: int = CALIBRATION_SEED):
    """``n`` images at ``resolution`` as a float32 numpy array (N, 3, r, r), for BN or int8 calibration.

    Generated at 64 px on the CPU and resized, as in training; disjoint from training and held-out data.

    Example:
        >>> calibration_images(4, 48).shape
        (4, 3, 48, 48)
    """
    images, _ = make_shapes(n, seed=seed, size=64)
    return resize(images, resolution).numpy().astype("float32")
