"""Metrics per split (methods.md section 1), after WILDS: groups are defined apart from metrics.

``evaluate_split`` turns one split's predicted probabilities into tidy rows
``(split, target, metric, value)``: for ``target="y"`` accuracy, balanced accuracy, AUROC, ECE,
accuracy in every joint (y, z1..zk) group and the worst of them, and a bootstrap CI of accuracy;
for ``target=<attribute>`` the worst (y, z_i) group accuracy and the fairness gaps, which come
from fairlearn rather than being re-derived.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from shortcutlab.data.grouping import Grouper


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017): sum_b |B|/N |acc_b - conf_b|."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def auroc(probs: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's AUROC (one-vs-rest macro for several classes); NaN with one class present."""
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(roc_auc_score(y, probs, multi_class="ovr", labels=list(range(probs.shape[1]))))


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (per-example correctness)."""
    if n_boot <= 0 or len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def group_accuracies(
    pred: np.ndarray, y: np.ndarray, gid: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and size of each group id in 0..n_groups-1 (NaN where a group is empty)."""
    correct = (pred == y).astype(float)
    counts = np.bincount(gid, minlength=n_groups)
    sums = np.bincount(gid, weights=correct, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return acc, counts


def fairness_gaps(y: np.ndarray, pred: np.ndarray, sensitive: np.ndarray) -> dict[str, float]:
    """Demographic-parity, equal-opportunity and equalized-odds differences from fairlearn.

    Defined for a binary task; NaN where a sensitive group lacks a label value.
    """
    from fairlearn.metrics import (
        demographic_parity_difference,
        equal_opportunity_difference,
        equalized_odds_difference,
    )

    out = {"dp_gap": float("nan"), "eopp_gap": float("nan"), "eodds_gap": float("nan")}
    if len(np.unique(sensitive)) < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["dp_gap"] = float(demographic_parity_difference(y, pred, sensitive_features=sensitive))
        if len(np.unique(y)) == 2 and set(np.unique(y)) <= {0, 1}:
            out["eopp_gap"] = float(
                equal_opportunity_difference(y, pred, sensitive_features=sensitive)
            )
            out["eodds_gap"] = float(
                equalized_odds_difference(y, pred, sensitive_features=sensitive)
            )
    return out


def evaluate_split(
    split: str,
    probs: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    grouper: Grouper,
    n_boot: int = 200,
    seed: int = 0,
) -> list[dict]:
    """All metric rows for one split. ``probs`` (N, C), ``y`` (N,), ``z`` (N, k); groups and
    their names come from the data's ``grouper`` (the full table's, whatever this split holds)."""
    pred = probs.argmax(axis=1)
    rows: list[dict] = []

    def add(target: str, metric: str, value: float) -> None:
        rows.append({"split": split, "target": target, "metric": metric, "value": float(value)})

    correct = (pred == y).astype(float)
    add("y", "accuracy", correct.mean())
    lo, hi = bootstrap_ci(correct, n_boot, seed)
    add("y", "accuracy_ci_low", lo)
    add("y", "accuracy_ci_high", hi)
    add(
        "y",
        "balanced_accuracy",
        balanced_accuracy_score(y, pred) if len(np.unique(y)) > 1 else np.nan,
    )
    add("y", "auroc", auroc(probs, y))
    add("y", "ece", expected_calibration_error(probs, y))

    # joint groups (y, z1..zk)
    gid = grouper.ids(y, z)
    names = grouper.names()
    acc, counts = group_accuracies(pred, y, gid, len(names))
    for name, a, n in zip(names, acc, counts):
        if n > 0:
            add("y", f"group_accuracy[{name}]", a)
    if (counts > 0).any():
        add("y", "worst_group_accuracy", np.nanmin(acc))

    # per attribute: (y, z_i) groups and fairness gaps
    num_classes = grouper.num_classes
    for j, attr in enumerate(grouper.attributes):
        gid_j = grouper.pair_ids(y, z, j)
        acc_j, counts_j = group_accuracies(pred, y, gid_j, num_classes * grouper.cardinalities[j])
        if (counts_j > 0).any():
            add(attr, "worst_group_accuracy", np.nanmin(acc_j))
        if num_classes == 2:
            for metric, value in fairness_gaps(y, pred, z[:, j]).items():
                add(attr, metric, value)
    return rows


def selection_score(
    rule: str, probs: np.ndarray, y: np.ndarray, gid: np.ndarray, n_groups: int
) -> float:
    """Model-selection score on the val split: ``val_average`` the mean accuracy,
    ``val_worst_group`` the worst present group's accuracy, ``val_group_average`` the mean of the
    present groups' accuracies (every group weighs the same, as in a split without the shortcut;
    less noisy than the worst group when the smallest groups hold a few images)."""
    pred = probs.argmax(axis=1)
    if rule == "val_average":
        return float((pred == y).mean())
    acc, counts = group_accuracies(pred, y, gid, n_groups)
    if not (counts > 0).any():
        return float((pred == y).mean())
    return float(np.nanmean(acc)) if rule == "val_group_average" else float(np.nanmin(acc))
