"""``synth-cxr``: a grayscale frontal chest phantom with pleural effusion as the task.

Anatomy (posteroanterior view, viewer's right = patient's left): a bright body outline of soft
tissue, two dark air-filled lungs that widen towards the base, the heart overlapping the lower
medial part of the patient's left lung, the spine between the lungs and posterior ribs as curved
bright bands.

- ``y`` (effusion): fluid collects at the lung base and appears as a homogeneous opacity that
  blunts the costophrenic angle, with a meniscus-shaped upper border that rises towards the
  lateral chest wall. Drawn only inside the lung, in one or both lungs, with random depth, so the
  evidence lies inside the ROI.
- ``sex`` (body habitus): a wider, squarer body outline and brighter soft tissue for 1 (male);
  lung size is the same, so the effect lies outside the lungs.
- ``age`` (1 = old): dimmer bones (osteopenia) and coarser soft-tissue texture.
- ``site``: a burned-in laterality marker in the top-left corner and stronger scanner noise for
  site 1 (CheXpert/MIMIC models are known to read such markers).

ROI = lungs + heart.
"""

from __future__ import annotations

import numpy as np

from shortcutlab.data.synthetic._common import (
    F32,
    centred,
    col,
    grid,
    interval,
    pixel_noise,
    present,
    smooth_field,
    soft,
    to_uint8,
)

# Calibrated (benchmarks/calibrate_synthetic.py and tests/test_synthetic.py): the effusion is
# learnable without correlation (>= 90% on held-out images) but slower than every attribute, so
# ERM on correlated data takes the shortcut. At 0.5 it plateaued at 0.87-0.91; at 0.6 it was
# unstable (dips to 0.77); 0.65 reached 0.93 after 120 steps (measured).
_EFFUSION = 0.65

ATTRIBUTES = {
    "sex": "body habitus: 1 = wider, squarer body outline and brighter soft tissue (outside lungs)",
    "age": "1 = old: dimmer bones (osteopenia) and coarser soft-tissue texture",
    "site": "1 = burned-in corner marker and stronger scanner noise (outside the ROI)",
}


def render_cxr(
    f: dict[str, np.ndarray], rng: np.random.Generator, size: int, s: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    n = len(f["y"])
    x, y = grid(size)
    # Nuisance draws: fixed order and count, independent of factor values and strengths.
    cx, cy = col(rng.normal(0, 0.03, n)), col(rng.normal(0, 0.03, n))
    scale = col(rng.uniform(0.94, 1.06, n))
    body_jit = col(rng.normal(0, 0.02, n))
    rib_freq, rib_phase = col(rng.uniform(3.0, 3.6, n)), col(rng.uniform(0, 1, n))
    side = rng.integers(0, 3, n)  # effusion in 0: right lung, 1: left lung, 2: both
    depth = col(rng.uniform(0.16, 0.4, n))  # fraction of the lung height filled
    curv = col(rng.uniform(0.15, 0.4, n))  # meniscus rise at the lateral wall
    amp = col(rng.uniform(0.36, 0.6, n))
    mdx, mdy = col(rng.uniform(0, 0.06, n)), col(rng.uniform(0, 0.06, n))
    tissue_tex = smooth_field(rng, n, size, 8)
    lung_tex = smooth_field(rng, n, size, 12)
    noise = pixel_noise(rng, (n, size, size))

    sex = centred(s["sex"], f["sex"])
    age = centred(s["age"], f["age"])
    site = present(s["site"], f["site"])
    eff = present(_EFFUSION * s["y"], f["y"])

    xc, yc = (x - cx) / scale, (y - cy) / scale  # (N,1,W), (N,H,1)

    # Body: superellipse, separable powers; wider and squarer for sex = 1.
    a = 0.78 + 0.08 * sex + body_jit
    p = 3.0 + 0.8 * sex
    val = np.abs(xc / a) ** p + np.abs((yc - 0.2) / 1.25) ** p
    body = soft((1 - val) * a / p, size)
    tissue = 0.42 + 0.06 * sex + (0.03 + 0.02 * age) * tissue_tex
    img = F32(0.04) + (tissue - 0.04) * body

    bone = 0.16 * (1 - 0.4 * age)
    spine = interval(xc, -0.07, 0.07, size)
    img = img + (0.5 * bone + 0.04) * spine * body

    roi = np.zeros((n, size, size), dtype=bool)
    for k, sgn in enumerate((-1.0, 1.0)):  # k = 0: patient's right lung (viewer's left)
        xr = xc - sgn * 0.37
        yr = (yc + 0.05) / 0.52
        half_w = 0.19 + 0.05 * np.clip(yr, -1, 1)
        q = (xr / half_w) ** 2 + yr**2
        lung = soft((1 - q) * 0.09, size)
        roi |= lung > 0
        # Effusion: opacity below a meniscus that rises laterally; only in the chosen lung(s).
        lateral = np.clip(sgn * xr / half_w, 0, 1)
        level = 1 - 2 * depth - curv * lateral**2
        opacity = np.clip((yr - level) * 5, 0, 1)
        on = col((side == k) | (side == 2)) * eff * amp
        lung_val = 0.14 + 0.03 * lung_tex + (0.52 - 0.14) * on * opacity
        img = img + (lung_val - img) * lung

    hq = ((xc - 0.15) / 0.25) ** 2 + ((yc - 0.3) / 0.2) ** 2
    heart = soft((1 - hq) * 0.1, size)
    roi |= heart > 0
    img = img + (0.55 + 0.02 * tissue_tex - img) * heart

    # Posterior ribs: bands that curve downwards laterally, over the chest.
    t = (yc + 0.3 * xc**2) * rib_freq + rib_phase
    ribs = np.clip((np.cos(2 * np.pi * t) - 0.3) * 1.5, 0, 1) * (yc < 0.6)
    img = img + 0.7 * bone * ribs * body * (1 - heart)

    # Site marker: a bright burned-in tag with a dark "L" in the top-left corner.
    x0, y0 = -0.94 + mdx, -0.94 + mdy
    tag = interval(x, x0, x0 + 0.3, size) * interval(y, y0, y0 + 0.36, size)
    letter = np.maximum(
        interval(x, x0 + 0.08, x0 + 0.14, size) * interval(y, y0 + 0.06, y0 + 0.3, size),
        interval(x, x0 + 0.08, x0 + 0.24, size) * interval(y, y0 + 0.24, y0 + 0.3, size),
    )
    img = img + (0.95 - img) * np.minimum(site * 0.9, 1) * tag
    img = img + (0.2 - img) * np.minimum(site * 0.9, 1) * letter
    img = img + (0.015 + 0.045 * site) * noise
    return to_uint8(img)[:, None], roi
