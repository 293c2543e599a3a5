"""``synth-mri``: a grayscale axial T1-like brain slice phantom with age group as the task.

Scalp (bright fat), skull (dark ring), a cortex of grey matter folded by sulci around white matter,
and the two lateral ventricles (dark CSF) near the centre.

- ``y`` (1 = old): brain atrophy, the classic age signal on MRI: enlarged lateral ventricles,
  wider sulci and a wider CSF gap between brain and skull. All of it inside the brain ROI.
  Graded, as brain age is: each image's atrophy is ``y + N(0, 0.39^2)`` (in units of the
  old-minus-young difference), so the classes overlap and no classifier of the atrophy does
  better than Phi(0.5 / 0.39) = 90% (about what the MIMM-X paper's rebalanced model reaches
  on val). The evidence one image carries about age is bounded, so a model trained where sex
  and scanner agree with age 90% of the time weighs it against them, as on real data, instead
  of learning that age always wins (docs/RESULTS.md, "Phantom checks").
- ``sex``: head size and shape (1 = larger, slightly rounder head); the brain scales with it, so
  the ROI follows the head.
- ``dataset`` (scanner): a smooth multiplicative bias field (RF inhomogeneity), a contrast
  (gamma) change and stronger noise for dataset 1, as between the public cohorts that MIMM-X
  pools.

ROI = the brain, inside the skull.
"""

from __future__ import annotations

import numpy as np

from shortcutlab.data.synthetic._common import (
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
    "sex": "head size and shape: 1 = larger, rounder head",
    "dataset": "scanner: 1 = smooth bias field, changed contrast and stronger noise",
}

# Calibrated (benchmarks/calibrate_synthetic.py): age is learnable without correlation but slower
# than sex and scanner, so ERM on correlated data takes the shortcut.
_AGE, _SEX = 0.8, 1.5
_AGE_SPREAD = 0.39  # sd of the graded atrophy within a class: Bayes accuracy Phi(0.5 / sd) = 0.90
_INNER = 0.84  # inner skull boundary, as a fraction of the head's semi-axes


def render_mri(
    f: dict[str, np.ndarray], rng: np.random.Generator, size: int, s: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    n = len(f["y"])
    x, y = grid(size)
    # Nuisance draws: fixed order and count, independent of factor values and strengths.
    cx, cy = col(rng.normal(0, 0.03, n)), col(rng.normal(0, 0.03, n))
    angle = rng.normal(0, 0.08, n)
    head_jit = col(rng.normal(0, 0.025, n))
    vent_size = col(rng.uniform(0.75, 1.25, n))
    sulc_phase = col(rng.uniform(0, 2 * np.pi, n))
    sulc_count = col(rng.integers(18, 24, n))
    bias_dir = rng.uniform(0, 2 * np.pi, n)
    wm_tex = smooth_field(rng, n, size, 8)
    bias_tex = smooth_field(rng, n, size, 4)
    noise = pixel_noise(rng, (n, size, size))
    atrophy_jit = col(rng.normal(0, _AGE_SPREAD, n))

    old = present(_AGE * s["y"], f["y"]) + _AGE * s["y"] * atrophy_jit
    sex = centred(_SEX * s["sex"], f["sex"])
    scanner = present(s["dataset"], f["dataset"])
    contrast = centred(s["dataset"], f["dataset"])

    ca, sa = col(np.cos(angle)), col(np.sin(angle))
    xr = (x - cx) * ca + (y - cy) * sa
    yr = (y - cy) * ca - (x - cx) * sa
    a = (0.66 + head_jit) * (1 + 0.12 * sex)
    b = (0.84 + head_jit) * (1 + 0.05 * sex)
    u, v = xr / a, yr / b
    q = np.sqrt(u**2 + v**2)  # 1 at the outer edge of the scalp
    head = soft((1 - q) * a, size)
    brain_space = soft((_INNER - q) * a, size)  # inside the inner skull boundary = ROI
    roi = brain_space > 0

    qb = q / _INNER  # 1 at the inner skull boundary
    theta = np.arctan2(v, u)
    # Atrophy: the brain pulls away from the skull, leaving a wider CSF gap.
    gap = 0.04 + 0.025 * old
    brain = soft((1 - gap - qb) * a * _INNER, size)
    wm_edge = 0.68 + 0.04 * np.cos(5 * theta + sulc_phase) + 0.02 * wm_tex
    wm = soft((wm_edge - qb) * a * _INNER, size)
    tissue = 0.42 + 0.3 * wm + 0.02 * wm_tex

    # Sulci: CSF clefts running from the surface into the cortex; wider with age.
    wobble = 0.5 * np.sin(3 * theta + 2 * sulc_phase) + 0.3 * np.sin(5 * theta - sulc_phase)
    cleft = np.abs(np.sin(0.5 * sulc_count * theta + sulc_phase + wobble))
    width = 0.18 + 0.1 * old
    start = 0.68 + 0.1 * np.sin(7 * theta + 3 * sulc_phase)  # sulci of varying depth
    sulci = np.clip((width - cleft) * 8, 0, 1) * np.clip((qb - start) * 8, 0, 1)
    tissue = tissue + (0.12 - tissue) * sulci

    # Lateral ventricles: two tilted ellipses either side of the midline, larger with age.
    vs = vent_size * (1 + 0.25 * old)
    vent = np.zeros_like(tissue)
    for sgn in (-1.0, 1.0):
        vu = (u / _INNER - sgn * 0.12) - sgn * 0.25 * (v / _INNER)
        vv = v / _INNER + 0.04
        vq = (vu / (0.07 * vs)) ** 2 + (vv / (0.3 * vs)) ** 2
        vent = np.maximum(vent, soft((1 - vq) * 0.05 * vs * a, size))
    tissue = tissue + (0.1 - tissue) * vent

    img = 0.12 + (tissue - 0.12) * brain  # CSF (0.12) around and between
    skull = 0.18
    scalp = head * (1 - brain_space) * np.clip((q - 0.92) * 40, 0, 1)
    img = img * brain_space + skull * head * (1 - brain_space) + (0.78 - skull) * scalp
    # Scanner: contrast (gamma), smooth bias field along a random direction, noise level.
    img = np.maximum(img, 0) ** (1 + 0.25 * contrast)
    ramp = x * col(np.cos(bias_dir)) + y * col(np.sin(bias_dir))
    img = img * np.exp(scanner * (0.35 * ramp + 0.1 * bias_tex))
    img = img + (0.015 + 0.03 * scanner) * noise

    return to_uint8(img)[:, None], roi
