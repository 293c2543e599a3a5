"""Disentanglement probes (methods.md sec. 1): linear probes on frozen feature blocks.

A logistic-regression probe (scikit-learn, standardised inputs) is fitted on the val split's
features and scored on every split: ``f_y -> each attribute`` (ideal: chance, the task block holds
no confounder) and ``f_<attr> -> y`` and the other attributes. Methods without split blocks only
have ``f``; it is probed for every attribute, which is the baseline the split methods are
compared with. Rows: ``target`` = the predicted variable, ``metric = probe_accuracy[<block>]``.

val carries the training correlation (e.g. P(z = y) = 0.9), so a probe fitted on it as is could
read ``z`` off a perfectly clean ``f_y`` through ``y``. Our choice: each example is weighted by
``1 / count`` of its joint cell (target, y, and the block's own attribute), which makes the
probe's training distribution decorrelated while it still sees only val.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe_pairs(blocks: list[str], attributes: list[str]) -> list[tuple[str, str]]:
    """``(block, target)`` pairs to probe, given the block names of ``method.features``."""
    pairs: list[tuple[str, str]] = []
    if "f_y" in blocks:
        pairs += [("f_y", a) for a in attributes]
    else:
        pairs += [("f", a) for a in attributes if "f" in blocks]
    for attr in attributes:
        if f"f_{attr}" in blocks:
            pairs += [(f"f_{attr}", t) for t in ["y", *attributes] if t != attr]
    return pairs


def balancing_weights(columns: list[np.ndarray]) -> np.ndarray:
    """``1 / count`` of each row's joint cell over ``columns``, scaled to mean 1."""
    _, cell, counts = np.unique(
        np.stack(columns, 1), axis=0, return_inverse=True, return_counts=True
    )
    w = 1.0 / counts[cell.reshape(-1)]
    return w * len(w) / w.sum()


def probe_rows(
    features: dict[str, dict[str, np.ndarray]],
    labels: dict[str, dict[str, np.ndarray]],
    attributes: list[str],
    fit_split: str = "val",
    max_fit: int = 5000,
    seed: int = 0,
) -> list[dict]:
    """Probe accuracy rows ``{split, target, metric, value}``.

    ``features[split][block]`` are (N, d) arrays, ``labels[split]`` maps ``y`` and each attribute
    to (N,) arrays. The probe sees only ``fit_split`` (at most ``max_fit`` rows, seeded subsample).
    """
    if fit_split not in features:
        return []
    rows: list[dict] = []
    fit_feats, fit_labels = features[fit_split], labels[fit_split]
    n = len(fit_labels["y"])
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, max_fit, replace=False)) if n > max_fit else np.arange(n)
    for block, target in probe_pairs(list(fit_feats), attributes):
        t_fit = fit_labels[target][keep]
        if len(np.unique(t_fit)) < 2 or not np.isfinite(fit_feats[block][keep]).all():
            continue  # nothing to learn, or diverged features: no row rather than a crash
        cell_of = [target, "y", block[2:] if block[2:] in attributes else None]
        weights = balancing_weights([fit_labels[c][keep] for c in dict.fromkeys(cell_of) if c])
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        probe.fit(fit_feats[block][keep], t_fit, logisticregression__sample_weight=weights)
        for split, feats in features.items():
            if block not in feats or len(labels[split][target]) == 0:
                continue
            if not np.isfinite(feats[block]).all():
                continue
            acc = float((probe.predict(feats[block]) == labels[split][target]).mean())
            rows.append(
                {
                    "split": split,
                    "target": target,
                    "metric": f"probe_accuracy[{block}]",
                    "value": acc,
                }
            )
    return rows
