"""Deterministic synthetic images with natural-image statistics, ImageNet-normalized.

Each image is a base colour with an illumination gradient plus 1/f^a random fields (the
power-law amplitude spectrum of natural scenes) for luminance and weaker colour, overlaid with a
few textured occluders (ellipses, rectangles, a horizon: a "dead leaves" scene) for sharp edges.
Pixels are clipped to [0, 1] and rounded to 8 bits like a photo, then normalized with the
ImageNet mean/std.
"""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _pink_field(size: int, rng: np.random.Generator, slope: float = 1.4) -> np.ndarray:
    """(size, size) zero-mean unit-std field with a 1/f^slope amplitude spectrum."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** -slope
    amp[0, 0] = 0.0
    spec = amp * (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape))
    field = np.fft.irfft2(spec, s=(size, size))
    return field / (field.std() + 1e-12)


def _shape_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of one random ellipse, rotated rectangle or half-plane."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.0, 1.0, 2)
    ang = rng.uniform(0.0, np.pi)
    u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
    v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
    kind = rng.integers(3)
    if kind == 0:
        a, b = rng.uniform(0.08, 0.35, 2)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == 1:
        a, b = rng.uniform(0.05, 0.3, 2)
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    return v > 0.0


def synthetic_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """One (3, size, size) RGB image in [0, 1], 8-bit levels."""
    yy = np.linspace(-0.5, 0.5, size)[:, None]
    base = rng.uniform(0.25, 0.75, 3)[:, None, None]
    light = rng.uniform(-0.3, 0.3) * yy  # global illumination gradient
    lum = _pink_field(size, rng)
    chroma = np.stack([_pink_field(size, rng, 1.8) for _ in range(2)])
    tint = rng.uniform(-0.5, 0.5, (3, 2))
    img = base + light + 0.15 * lum[None] + 0.05 * np.einsum("cj,jhw->chw", tint, chroma)
    for _ in range(int(rng.integers(2, 6))):
        mask = _shape_mask(size, rng)
        colour = rng.uniform(0.05, 0.95, 3)[:, None, None]
        texture = 0.08 * _pink_field(size, rng, 1.2) + rng.uniform(-0.2, 0.2) * yy
        img = np.where(mask[None], colour + texture[None], img)
    return np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0


def synthetic_batch(batch: int, size: int, seed: int) -> np.ndarray:
    """(batch, 3, size, size) float64 images, ImageNet-normalized; deterministic in seed."""
    rng = np.random.default_rng([int(seed), 0x1A6E5])
    imgs = np.stack([synthetic_image(size, rng) for _ in range(batch)])
    return (imgs - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
