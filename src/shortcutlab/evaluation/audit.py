"""Audit extras on top of ``metrics.evaluate_split``: bootstrap CIs of the fairness gaps
(methods.md section 1). Probe leakage is the runner's (``evaluation/probes.py``).

The point estimates come from ``metrics.fairness_gaps`` (fairlearn); here they are only
resampled, with a vectorised version of the same definitions that a test checks against
fairlearn.
"""

from __future__ import annotations

import numpy as np


def _rate_gap(hit: np.ndarray, member: np.ndarray) -> np.ndarray:
    """max - min over groups of the mean of ``hit`` within each group, per bootstrap draw.

    ``hit`` (B, N) is 0/1, ``member`` (G, B, N) marks group membership; NaN if a group is empty.
    """
    counts = member.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = (member * hit[None]).sum(axis=2) / counts
    rates = np.where(counts > 0, rates, np.nan)
    return rates.max(axis=0) - rates.min(axis=0)


def bootstrap_fairness_gaps(
    y: np.ndarray, pred: np.ndarray, sensitive: np.ndarray, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """The gaps of ``metrics.fairness_gaps`` on many resamples ``idx`` (B, N) at once.

    Same definitions as fairlearn's (max - min between groups of the selection rate, of the TPR,
    and the larger of the TPR and FPR differences); a test checks them against fairlearn. Only
    the resampling is vectorised here, because 200 fairlearn calls per split take minutes.
    """
    yb, pb, sb = y[idx], pred[idx].astype(float), sensitive[idx]
    groups = np.unique(sensitive)
    member = np.stack([sb == g for g in groups]).astype(float)
    dp = _rate_gap(pb, member)
    tpr = _rate_gap(pb, member * (yb == 1)[None])
    fpr = _rate_gap(pb, member * (yb == 0)[None])
    return {"dp_gap": dp, "eopp_gap": tpr, "eodds_gap": np.maximum(tpr, fpr)}


def fairness_gap_cis(
    y: np.ndarray,
    pred: np.ndarray,
    sensitive: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CI (resampling examples) of each gap of ``fairness_gaps``.

    Resamples in which a group lacks a label value have no gap and are left out.
    """
    names = ("dp_gap", "eopp_gap", "eodds_gap")
    binary = len(np.unique(y)) == 2 and set(np.unique(y)) <= {0, 1}
    if n_boot <= 0 or len(y) == 0 or len(np.unique(sensitive)) < 2 or not binary:
        return {k: (float("nan"), float("nan")) for k in names}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_boot, len(y)))
    draws = bootstrap_fairness_gaps(np.asarray(y), np.asarray(pred), np.asarray(sensitive), idx)
    a = (1 - level) / 2
    out = {}
    for k in names:
        v = draws[k][np.isfinite(draws[k])]
        out[k] = (
            (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)))
            if len(v)
            else (float("nan"), float("nan"))
        )
    return out
