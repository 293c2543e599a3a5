"""Vectorised drawing helpers shared by the synthetic phantoms.

Every shape is drawn for the whole batch at once: per-image parameters are columns of shape
(N, 1, 1) that broadcast against the pixel grid, and separable quantities (a function of x only or
of y only) stay at (N, 1, W) or (N, H, 1) until they are combined, which keeps rendering cheap.
Coordinates are normalised so that the image spans [-1, 1] on both axes (y grows downwards), which
makes every phantom look the same at 32, 64 or 128 pixels.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

F32 = np.float32

# False while ``without_pixel_noise()`` is active: the factor masks are drawn without scanner noise
_PIXEL_NOISE = contextvars.ContextVar("pixel_noise", default=True)


@contextmanager
def without_pixel_noise():
    """Render with the white pixel noise set to zero (its random draws still happen, so every
    other nuisance is unchanged) and without rounding to uint8 (float32 on the 0-255 scale): the
    factor masks (``factor_masks``) compare two such renders, so a factor that also raises the
    noise level (a scanner, a site) is located by what it draws, and a change too small to move
    a rounded pixel without noise is still found where noise would make it move one.
    """
    token = _PIXEL_NOISE.set(False)
    try:
        yield
    finally:
        _PIXEL_NOISE.reset(token)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``x`` of shape (1, 1, W) and ``y`` of shape (1, H, 1)."""
    c = ((np.arange(size, dtype=F32) + 0.5) / size * 2 - 1).astype(F32)
    return c[None, None, :], c[None, :, None]


def col(values) -> np.ndarray:
    """Per-image values as a float32 column (N, 1, 1) that broadcasts over pixels."""
    return np.asarray(values, dtype=F32)[:, None, None]


def soft(signed_distance: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased inside indicator from a signed distance (normalised units, > 0 inside).

    The ramp is one pixel wide, so shapes move smoothly with their parameters instead of in
    whole-pixel steps.
    """
    return np.clip(signed_distance * (size / 2) + 0.5, 0, 1, dtype=F32)


def interval(t: np.ndarray, lo, hi, size: int) -> np.ndarray:
    """Anti-aliased indicator of ``lo <= t <= hi`` (one axis of a rectangle)."""
    return soft(np.minimum(t - lo, hi - t), size)


@lru_cache(maxsize=32)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    w = pos - i0
    m = np.zeros((size, cells), dtype=F32)
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def smooth_field(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Smooth random texture (N, H, W), about unit variance: a ``cells`` x ``cells`` Gaussian
    grid upsampled bilinearly by two small matrix products."""
    g = rng.standard_normal((n, cells, cells), dtype=F32) * F32(1.5)
    m = _interp_matrix(size, cells)
    return m @ g @ m.T


def centred(strength: float, z: np.ndarray) -> np.ndarray:
    """A binary factor as a signed effect ``strength * (2 z - 1)``: -s for 0, +s for 1, and the
    same (0) for both at strength 0."""
    return col(strength * (2 * np.asarray(z, dtype=F32) - 1))


def present(strength: float, z: np.ndarray) -> np.ndarray:
    """A binary factor as a presence effect ``strength * z``: absent for 0, 0 for both at s=0."""
    return col(strength * np.asarray(z, dtype=F32))


def pixel_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance white noise (uniform: several times cheaper than Gaussian)."""
    u = rng.random(shape, dtype=F32)
    if not _PIXEL_NOISE.get():
        u[...] = 0
        return u
    u -= F32(0.5)
    u *= F32(12**0.5)
    return u


def to_uint8(img: np.ndarray) -> np.ndarray:
    img = img * F32(255)
    if not _PIXEL_NOISE.get():  # inside without_pixel_noise(): unrounded
        return np.clip(img, 0, 255)
    img += F32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
