"""Scores of a heatmap against a ground-truth mask (docs/methods.md section 8).

Shared by diffusion cross-attention grounding (``generative/grounding.py``) and classifier
attribution maps (``evaluation/attribution.py``); the masks are the phantoms' factor masks
(``data/counterfactual.true_factor_masks``) or any user segmentation.

- ``cnr``: contrast-to-noise ratio ``|mu_in - mu_out| / sqrt(var_in + var_out)`` (Vilouras et al.).
- ``miou``: the IoU of ``heat >= t`` with the mask, averaged over ``t`` in {0.1, ..., 0.5}
  (the heatmap min-max normalised to [0, 1] first, as the paper's maps are).
- ``pixel_auroc``: scikit-learn's ``roc_auc_score`` of the mask against the heat, pixel by pixel.
- ``mass_in_mask``: the share of the (non-negative) heat that falls on the mask: "share of
  attribution mass on the shortcut's pixels".

Every function scores one image; ``score_maps`` scores a batch and averages over images.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from shortcutlab.errors import ShortcutlabError

MIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)

__all__ = ["MIOU_THRESHOLDS", "cnr", "mass_in_mask", "miou", "pixel_auroc", "score_maps"]


def _pair(heat: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    heat = np.asarray(heat, dtype=np.float64)
    mask = np.asarray(mask).astype(bool)
    if heat.shape != mask.shape:
        raise ShortcutlabError(
            f"a heatmap of shape {heat.shape} cannot be scored against a mask of shape "
            f"{mask.shape}; resize the heatmap to the image first"
        )
    return heat.ravel(), mask.ravel()


def normalise(heat: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes all zeros."""
    heat = np.asarray(heat, dtype=np.float64)
    lo, hi = heat.min(), heat.max()
    return (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)


def cnr(heat: np.ndarray, mask: np.ndarray) -> float:
    """``|mu_in - mu_out| / sqrt(var_in + var_out)``; NaN when the mask is empty or full, or
    both sides are constant."""
    h, m = _pair(heat, mask)
    if m.all() or not m.any():
        return float("nan")
    inside, outside = h[m], h[~m]
    denom = np.sqrt(inside.var() + outside.var())
    return float(abs(inside.mean() - outside.mean()) / denom) if denom > 0 else float("nan")


def miou(
    heat: np.ndarray, mask: np.ndarray, thresholds: tuple[float, ...] = MIOU_THRESHOLDS
) -> float:
    """Mean over ``thresholds`` of IoU(normalised heat >= t, mask); NaN for an empty mask."""
    h, m = _pair(heat, mask)
    if not m.any():
        return float("nan")
    h = normalise(h)
    ious = []
    for t in thresholds:
        pred = h >= t
        ious.append((pred & m).sum() / (pred | m).sum())
    return float(np.mean(ious))


def pixel_auroc(heat: np.ndarray, mask: np.ndarray) -> float:
    """scikit-learn's ROC AUC of the mask (positives) ranked by the heat; NaN for an empty or
    full mask."""
    h, m = _pair(heat, mask)
    if m.all() or not m.any():
        return float("nan")
    return float(roc_auc_score(m, h))


def mass_in_mask(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive heat on the mask's pixels (negative values count as 0); NaN for a
    map with no positive heat."""
    h, m = _pair(heat, mask)
    h = np.clip(h, 0, None)
    total = h.sum()
    return float(h[m].sum() / total) if total > 0 else float("nan")


def score_maps(heats: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Mean over images (NaNs left out) of each score: ``cnr``, ``miou``, ``pixel_auroc``,
    ``mass_in_mask`` and ``mask_share`` (the mask's share of the image: the mass a uniform map
    puts on it). ``heats`` (N, H, W), ``masks`` (N, H, W)."""
    heats, masks = np.asarray(heats), np.asarray(masks)
    if heats.shape != masks.shape:
        raise ShortcutlabError(
            f"heatmaps {heats.shape} and masks {masks.shape} must have the same shape"
        )
    fns = {"cnr": cnr, "miou": miou, "pixel_auroc": pixel_auroc, "mass_in_mask": mass_in_mask}
    out = {}
    for name, fn in fns.items():
        values = np.array([fn(h, m) for h, m in zip(heats, masks)], dtype=float)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["mask_share"] = float(masks.astype(bool).mean()) if len(masks) else float("nan")
    return out
