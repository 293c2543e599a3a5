"""``synth-derm``: an RGB dermoscopy phantom with malignancy as the task.

A pigmented lesion on skin, after the ABC rule of dermoscopy:

- ``y`` (malignant): Asymmetry and an irregular Border (extra low- and high-order harmonics of
  the lesion's radius) and Colour variegation (dark brown-black and blue-grey patches). Benign
  lesions are round to oval, regular and uniformly brown. All of it lies inside the lesion.
- ``ruler``: a dark ruler strip with light tick marks along one image edge; rulers appear in many
  ISIC images and are a documented shortcut for malignancy (Bissoto et al.; Winkler et al. 2019).
- ``ink``: purple surgical skin-marker strokes around the lesion, outside it (Winkler et al. 2019
  showed they raise a commercial CNN's melanoma score).
- ``skin_tone``: light vs dark background skin (a sensitive attribute); the lesion colour is the
  same, so the effect lies outside the lesion.
- ``site``: the camera/lighting of a clinic: a cooler colour cast and dark circular vignette
  corners of a contact dermatoscope for site 1 (used later as source/target domain).

ROI = the lesion, dilated by about 10% plus 2 pixels.
"""

from __future__ import annotations

import numpy as np

from shortcutlab.data.synthetic._common import (
    F32,
    centred,
    col,
    grid,
    pixel_noise,
    present,
    smooth_field,
    soft,
    to_uint8,
)

ATTRIBUTES = {
    "ruler": "1 = a ruler with tick marks along one image edge (outside the lesion)",
    "ink": "1 = purple skin-marker ink strokes around the lesion (outside it)",
    "skin_tone": "1 = dark skin, 0 = light skin (sensitive attribute; outside the lesion)",
    "site": "1 = cool colour cast and dark vignette corners (clinic / camera domain)",
}

# Calibrated (benchmarks/calibrate_synthetic.py and tests/test_synthetic.py): malignancy is
# learnable without correlation (>= 90% on held-out images) but slower than every attribute, so
# ERM on correlated data takes the shortcut. Measured test accuracy after 184 steps: 0.87 at
# 0.5, 0.88 at 0.61; 0.72 reached 0.94 after 104 steps (ruler and ink need 56, the others fewer).
_MALIGNANT = 0.72
_BINS = 256  # angular resolution of the lesion's radius profile
_LIGHT = np.array([0.90, 0.72, 0.62], F32)
_DARK = np.array([0.48, 0.32, 0.24], F32)
_BLACK = np.array([0.12, 0.07, 0.06], F32)
_BLUE_GREY = np.array([0.38, 0.42, 0.52], F32)
_INK = np.array([0.45, 0.18, 0.62], F32)
_RULER = np.array([0.22, 0.22, 0.24], F32)


def _ch(v: np.ndarray) -> np.ndarray:
    """An RGB colour, shape (3,) or (N, 3), as (N or 1, 3, 1, 1)."""
    v = np.asarray(v, F32)
    return v.reshape(-1, 3, 1, 1)


def render_derm(
    f: dict[str, np.ndarray], rng: np.random.Generator, size: int, s: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    n = len(f["y"])
    x, y = grid(size)
    # Nuisance draws: fixed order and count, independent of factor values and strengths.
    cx, cy = col(rng.uniform(-0.12, 0.12, n)), col(rng.uniform(-0.12, 0.12, n))
    r0 = rng.uniform(0.27, 0.4, n)
    k = np.arange(1, 9, dtype=F32)
    phase = rng.uniform(0, 2 * np.pi, (n, 8)).astype(F32)
    benign_amp = rng.uniform(0, 1, (n, 8)).astype(F32) * np.array(
        [0.02, 0.1, 0.02, 0.01, 0.005, 0.005, 0.005, 0.005], F32
    )
    malig_amp = rng.uniform(0.5, 1, (n, 8)).astype(F32) * np.array(
        [0.08, 0.05, 0.1, 0.05, 0.06, 0.05, 0.05, 0.04], F32
    )
    lesion_rgb = rng.uniform(0.3, 0.45, (n, 1)).astype(F32) * np.array([1.0, 0.62, 0.45], F32)
    skin_jit = rng.normal(0, 0.03, (n, 3)).astype(F32)
    ruler_side = rng.integers(0, 4, n)
    ruler_off = col(rng.uniform(0.0, 0.06, n))
    tick_phase = col(rng.uniform(0, 1, n))
    ink_angle = rng.uniform(0, 2 * np.pi, (n, 3)).astype(F32)
    ink_gap = rng.uniform(0.12, 0.25, (n, 3)).astype(F32)
    skin_tex = smooth_field(rng, n, size, 10)
    var_a = smooth_field(rng, n, size, 6)
    var_b = smooth_field(rng, n, size, 6)
    noise = pixel_noise(rng, (n, 1, size, size))

    mal = present(_MALIGNANT * s["y"], f["y"])[:, :, 0]  # (N, 1)
    tone = centred(s["skin_tone"], f["skin_tone"])[:, :, :, None]
    ruler = present(s["ruler"], f["ruler"])
    ink = present(s["ink"], f["ink"])
    site = present(s["site"], f["site"])

    # Lesion radius profile r(theta) on an angular grid, then looked up per pixel.
    theta = np.linspace(0, 2 * np.pi, _BINS, endpoint=False, dtype=F32)
    amp = benign_amp + mal * malig_amp  # (N, 8)
    harm = np.cos(k[None, :, None] * theta[None, None, :] + phase[:, :, None])
    profile = col(r0)[:, 0] * (1 + np.einsum("nk,nkt->nt", amp, harm))  # (N, BINS)
    dx, dy = x - cx, y - cy
    rho = np.sqrt(dx**2 + dy**2)
    idx = ((np.arctan2(dy, dx) + np.pi) * (_BINS / (2 * np.pi))).astype(np.int64) % _BINS
    # arctan2 is measured from -pi; shift the table so bin 0 is theta = -pi.
    profile = np.roll(profile, -_BINS // 2, axis=1)
    r = np.take_along_axis(profile, idx.reshape(n, -1), axis=1).reshape(n, size, size)
    lesion = soft(r - rho, size)
    roi = rho < r * 1.1 + 4.0 / size

    # Lesion colour: brown, darker towards the centre; malignant adds black and blue-grey patches.
    depth = np.clip(1 - rho / np.maximum(r, 1e-3), 0, 1)
    col_l = _ch(lesion_rgb) * (1 - 0.3 * depth)[:, None]
    black = np.clip(var_a - 0.2, 0, 1)[:, None] * mal[:, :, None, None]
    blue = np.clip(var_b - 0.4, 0, 1)[:, None] * mal[:, :, None, None]
    col_l = col_l + (_ch(_BLACK) - col_l) * np.minimum(black, 1)
    col_l = col_l + (_ch(_BLUE_GREY) - col_l) * np.minimum(blue, 0.8)

    skin = _ch(0.5 * (_LIGHT + _DARK)) + _ch(0.5 * (_DARK - _LIGHT)) * tone + _ch(skin_jit)
    img = skin * (1 + 0.04 * skin_tex[:, None]) + (col_l - skin) * (0.92 * lesion)[:, None]

    # Ink: three short purple strokes on a ring outside the lesion.
    strokes = np.zeros((n, size, size), F32)
    for j in range(3):
        ring = col(r0 * 1.15) + col(ink_gap[:, j]) + 0.04
        ca, sa = col(np.cos(ink_angle[:, j])), col(np.sin(ink_angle[:, j]))
        px, py = cx + ring * ca, cy + ring * sa  # stroke centre; the stroke is tangential
        u = (x - px) * -sa + (y - py) * ca
        v = (x - px) * ca + (y - py) * sa
        d = np.sqrt(np.maximum(np.abs(u) - 0.1, 0) ** 2 + v**2)
        strokes = np.maximum(strokes, soft(0.035 - d, size))
    a_ink = (np.minimum(ink * 0.85, 1) * strokes * ~roi)[:, None]
    img = img + (_ch(_INK) - img) * a_ink

    # Ruler along one edge: a dark strip with light ticks, longer every fifth.
    side = col(ruler_side)
    edge = np.where(side == 0, 1 - y, np.where(side == 1, 1 + y, np.where(side == 2, 1 - x, 1 + x)))
    along = np.where(side < 2, x + 0 * y, y + 0 * x)
    v = edge - ruler_off
    strip = soft(np.minimum(v, 0.2 - v), size)
    t = along / 0.07 + tick_phase
    major = (np.floor(t) % 5) == 0
    tick = soft(0.012 - np.abs(t - np.round(t)) * 0.07, size) * soft(
        np.where(major, 0.13, 0.08) - v, size
    )
    a_r = np.minimum(ruler * 0.95, 1) * strip
    img = img + (_ch(_RULER) - img) * a_r[:, None]
    img = img + (0.92 - img) * (a_r * tick)[:, None]

    # Site: colour cast and dark vignette corners of a contact dermatoscope.
    img = img * (1 + site[:, :, :, None] * _ch([-0.06, 0.0, 0.1]))
    vignette = np.clip((np.sqrt(x**2 + y**2) - 1.0) * 6, 0, 1)
    img = img * (1 - np.minimum(site * 0.9, 1) * vignette)[:, None]
    img = img + 0.015 * noise
    return to_uint8(img), roi
