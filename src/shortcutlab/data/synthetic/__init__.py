"""Embedded synthetic datasets: medical-image phantoms whose factors are known and controllable.

Each dataset renders a binary task ``y`` and binary attributes ``z`` from a table of factors, with
a per-factor visual ``strength`` (1.0 = default, 0.0 = invisible), so splits with any correlation
between ``y`` and ``z`` (train/val, inv, bal; see docs/methods.md section 1) and exact
counterfactuals ("same image, only the marker changed") are one call away. The defaults are
calibrated (``benchmarks/calibrate_synthetic.py``) so that the task is learnable without
correlation (>= 90% held-out accuracy for a small CNN) and every attribute is easier to learn than
the task, which is what makes a model trained on correlated data take the shortcut: with
P(z = y) = 0.9, ERM (small CNN, 10 epochs on 3,600 images) scores val/inv 95.0/72.4 (cxr,
z = sex), 97.2/86.4 (derm, z = ruler). The shortcut grows with the correlation: the quick preset
uses P(z = y) = 0.95.

Nuisance variation (position, size, texture, noise) comes from ``seed`` and is drawn in a fixed
order that does not depend on the factor values, so flipping one factor with the same seed
changes only what that factor draws.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shortcutlab.data.synthetic import cxr, derm, mri
from shortcutlab.data.synthetic._common import without_pixel_noise
from shortcutlab.errors import ShortcutlabError

_CHUNK = 64

__all__ = [
    "SYNTHETIC",
    "SyntheticSpec",
    "factor_masks",
    "render_rows",
    "render_synthetic",
    "renderer_fingerprint",
    "sample_grid",
]


@dataclass(frozen=True)
class SyntheticSpec:
    """One synthetic dataset: what its factors mean and the function that draws it."""

    name: str
    channels: int
    task: str
    attributes: dict[str, str]
    roi: str
    render: Callable[..., tuple[np.ndarray, np.ndarray]]

    @property
    def factors(self) -> list[str]:
        return ["y", *self.attributes]


SYNTHETIC: dict[str, SyntheticSpec] = {
    "synth-cxr": SyntheticSpec(
        name="synth-cxr",
        channels=1,
        task="1 = pleural effusion: meniscus-shaped opacity at a lung base",
        attributes=cxr.ATTRIBUTES,
        roi="lungs and heart",
        render=cxr.render_cxr,
    ),
    "synth-derm": SyntheticSpec(
        name="synth-derm",
        channels=3,
        task="1 = malignant lesion: asymmetric, irregular border, variegated colour",
        attributes=derm.ATTRIBUTES,
        roi="the lesion, slightly dilated",
        render=derm.render_derm,
    ),
    "synth-mri": SyntheticSpec(
        name="synth-mri",
        channels=1,
        task="1 = old age group: larger ventricles, wider sulci, more CSF around the brain",
        attributes=mri.ATTRIBUTES,
        roi="the brain, inside the skull",
        render=mri.render_mri,
    ),
}


@functools.cache
def renderer_fingerprint() -> str:
    """A hash of the renderers' source: part of every cache key, so images cached by an older
    version of the phantoms (other calibrated strengths, other anatomy) are never reused."""
    digest = hashlib.sha1()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _spec(name: str) -> SyntheticSpec:
    if name not in SYNTHETIC:
        raise ShortcutlabError(
            f"unknown synthetic dataset '{name}'; choose one of: {', '.join(SYNTHETIC)}"
        )
    return SYNTHETIC[name]


def render_synthetic(
    name: str,
    factors: pd.DataFrame,
    seed: int,
    image_size: int = 64,
    strengths: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one image per row of ``factors`` (integer columns ``y`` and every attribute).

    Returns images uint8 (N, C, H, W) and ROI masks bool (N, H, W). Deterministic given
    (factors, seed, image_size, strengths). ``strengths`` maps a factor name (``y`` or an
    attribute) to a multiplier of its visual strength, default 1.0; 0.0 makes it invisible.
    """
    spec, values, s = _checked(name, factors, seed, image_size, strengths)
    # Render in chunks with their own seeded streams: small temporaries stay in cache (about 2x
    # faster than one big batch) and the result does not depend on the machine.
    if len(factors) == 0:
        size = int(image_size)
        return np.zeros((0, spec.channels, size, size), np.uint8), np.zeros((0, size, size), bool)
    images, masks = [], []
    for start in range(0, len(factors), _CHUNK):
        chunk = {c: v[start : start + _CHUNK] for c, v in values.items()}
        im, m = _render_chunk(spec, chunk, seed, start // _CHUNK, image_size, s)
        images.append(im)
        masks.append(m)
    return np.concatenate(images), np.concatenate(masks)


def _render_chunk(spec, chunk, seed, index, image_size, s):
    rng = np.random.default_rng([int(seed), int(index)])
    return spec.render(chunk, rng, int(image_size), s)


def _checked(name, factors, seed, image_size, strengths):
    spec = _spec(name)
    missing = [c for c in spec.factors if c not in factors.columns]
    if missing:
        raise ShortcutlabError(
            f"{name} needs factor columns {spec.factors}; missing: {', '.join(missing)}"
        )
    unknown = sorted(set(strengths or {}) - set(spec.factors))
    if unknown:
        raise ShortcutlabError(
            f"unknown strength for {name}: {', '.join(unknown)}; factors are {spec.factors}"
        )
    if image_size < 16:
        raise ShortcutlabError(f"image_size must be at least 16 pixels, got {image_size}")
    values = {}
    for c in spec.factors:
        v = factors[c].to_numpy()
        if len(v) and not np.isin(v, (0, 1)).all():
            raise ShortcutlabError(f"factor '{c}' of {name} must be binary 0/1")
        values[c] = v.astype(np.int64)
    if int(seed) < 0:
        raise ShortcutlabError(f"seed must be a non-negative integer, got {seed}")
    s = {c: float((strengths or {}).get(c, 1.0)) for c in spec.factors}
    return spec, values, s


def render_rows(
    name: str,
    factors: pd.DataFrame,
    rows: np.ndarray,
    total: int,
    seed: int,
    image_size: int = 64,
    strengths: dict[str, float] | None = None,
    float_out: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Render only rows ``rows`` of a table of ``total`` rows that ``render_synthetic`` drew
    with ``seed``, with the factors given here (one row of ``factors`` per entry of ``rows``).

    Each row's nuisance draws (position, texture, noise) depend only on its position in the
    table, never on the factors, so rendering a row with one factor changed gives its exact
    counterfactual: the same image with only that factor's drawing changed (docs/methods.md
    section 8). Only the chunks holding ``rows`` are rendered.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(factors):
        raise ShortcutlabError("render_rows needs one row of factors per row index")
    if len(rows) and (rows.min() < 0 or rows.max() >= int(total)):
        raise ShortcutlabError(f"row indices must lie in [0, {int(total)})")
    spec, values, s = _checked(name, factors, seed, image_size, strengths)
    size = int(image_size)
    images = np.zeros((len(rows), spec.channels, size, size), np.float32 if float_out else np.uint8)
    masks = np.zeros((len(rows), size, size), bool)
    for index in np.unique(rows // _CHUNK):
        start = int(index) * _CHUNK
        length = min(_CHUNK, int(total) - start)
        here = np.flatnonzero(rows // _CHUNK == index)
        chunk = {c: np.zeros(length, np.int64) for c in values}
        for c, v in values.items():
            chunk[c][rows[here] - start] = v[here]
        im, m = _render_chunk(spec, chunk, seed, index, size, s)
        images[here] = im[rows[here] - start]
        masks[here] = m[rows[here] - start]
    return images, masks


def factor_masks(
    name: str,
    factors: pd.DataFrame,
    factor: str,
    rows: np.ndarray,
    total: int,
    seed: int,
    image_size: int = 64,
    strengths: dict[str, float] | None = None,
) -> np.ndarray:
    """Bool (N, H, W): the pixels that ``factor`` draws in each row, i.e. those that differ
    between the row rendered with ``factor`` = 0 and = 1 (every other factor and nuisance as
    the row has them), both rendered unrounded and without white pixel noise so a factor that also raises
    the noise level is located by what it draws (a marker, a ruler). The ground truth of the
    grounding and attribution scores (docs/methods.md section 8)."""
    spec = _spec(name)
    if factor not in spec.factors:
        raise ShortcutlabError(
            f"{name} has no factor '{factor}'; it has: {', '.join(spec.factors)}"
        )
    with without_pixel_noise():
        renders = []
        for value in (0, 1):
            f = factors.copy()
            f[factor] = value
            renders.append(
                render_rows(name, f, rows, total, seed, image_size, strengths, float_out=True)[0]
            )
    return (np.abs(renders[0] - renders[1]) > 1e-3).any(axis=1)


def sample_grid(name: str, n_per_cell: int = 3, seed: int = 0, image_size: int = 64) -> np.ndarray:
    """RGB uint8 grid (H, W, 3) of examples: one row per attribute, four blocks of
    ``n_per_cell`` images per row for (y, z) = (0, 0), (0, 1), (1, 0), (1, 1); the other
    attributes are drawn at random. Blocks are separated by wider gaps than images."""
    spec = _spec(name)
    attrs = list(spec.attributes)
    rng = np.random.default_rng(seed)
    rows = []
    for a in attrs:
        for yv in (0, 1):
            for zv in (0, 1):
                row = {c: rng.integers(0, 2, n_per_cell) for c in attrs}
                row["y"] = np.full(n_per_cell, yv)
                row[a] = np.full(n_per_cell, zv)
                rows.append(pd.DataFrame(row))
    table = pd.concat(rows, ignore_index=True)
    images, _ = render_synthetic(name, table, seed, image_size)
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    gap, block_gap, s = 2, 6, image_size
    row_w = 4 * n_per_cell * (s + gap) + 3 * block_gap + gap
    out = np.full((len(attrs) * (s + gap) + gap, row_w, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, rest = divmod(i, 4 * n_per_cell)
        block, j = divmod(rest, n_per_cell)
        top = gap + r * (s + gap)
        left = gap + block * (n_per_cell * (s + gap) + block_gap) + j * (s + gap)
        out[top : top + s, left : left + s] = img.transpose(1, 2, 0)
    return out
