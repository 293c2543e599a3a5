"""Audit extras on top of ``metrics.evaluate_split``: bootstrap CIs of the fairness gaps and
linear-probe leakage of the attributes from frozen features (methods.md section 1).

The gaps themselves come from ``metrics.fairness_gaps`` (fairlearn); here they are only
resampled. A probe is a standardised logistic regression fit on one split's features and scored
by balanced accuracy on another; chance is ``1 / cardinality`` and higher means the features
carry the attribute.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shortcutlab.evaluation.metrics import fairness_gaps


def fairness_gap_cis(
    y: np.ndarray,
    pred: np.ndarray,
    sensitive: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CI (resampling examples) of each gap of ``fairness_gaps``."""
    names = ("dp_gap", "eopp_gap", "eodds_gap")
    if n_boot <= 0 or len(y) == 0:
        return {k: (float("nan"), float("nan")) for k in names}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        for k, v in fairness_gaps(y[idx], pred[idx], sensitive[idx]).items():
            draws[k].append(v)
    a = (1 - level) / 2
    out = {}
    for k, vals in draws.items():
        v = np.asarray(vals, dtype=float)
        v = v[np.isfinite(v)]
        out[k] = (
            (float(np.quantile(v, a)), float(np.quantile(v, 1 - a)))
            if len(v)
            else (float("nan"), float("nan"))
        )
    return out


def probe_leakage(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> float:
    """Balanced accuracy of a linear probe fit on one split and scored on another."""
    if len(np.unique(train_labels)) < 2 or len(test_labels) == 0:
        return float("nan")
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe.fit(train_features, train_labels)
        return float(balanced_accuracy_score(test_labels, probe.predict(test_features)))
