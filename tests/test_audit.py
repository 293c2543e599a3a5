"""Audit extras: the vectorised bootstrap gaps equal fairlearn's; CIs cover the estimate; probes."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutlab.evaluation.audit import bootstrap_fairness_gaps, fairness_gap_cis
from shortcutlab.evaluation.metrics import fairness_gaps
from shortcutlab.evaluation.probes import probe_rows


@pytest.mark.parametrize("groups", [2, 3])
def test_vectorised_gaps_equal_fairlearn(groups):
    rng = np.random.default_rng(groups)
    n = 300
    y = rng.integers(0, 2, n)
    a = rng.integers(0, groups, n)
    pred = (rng.random(n) < 0.3 + 0.2 * a / groups + 0.3 * y).astype(int)
    idx = rng.integers(0, n, size=(5, n))
    fast = bootstrap_fairness_gaps(y, pred, a, idx)
    for b in range(5):
        ref = fairness_gaps(y[idx[b]], pred[idx[b]], a[idx[b]])
        for k, v in ref.items():
            assert fast[k][b] == pytest.approx(v, abs=1e-12), k


def test_gap_cis_cover_the_estimate_and_probe_finds_leakage():
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.integers(0, 2, n)
    a = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.8, y, a)  # predictions lean on a
    est = fairness_gaps(y, pred, a)
    cis = fairness_gap_cis(y, pred, a, n_boot=300, seed=0)
    for k, (lo, hi) in cis.items():
        assert lo <= est[k] <= hi and hi - lo < 0.2
    # the audit's probe is the runner's (fit on val, scored on the other splits)
    feats = np.c_[a + rng.normal(0, 0.3, n), rng.normal(size=(n, 3))]
    assert _probe(feats, y, a) > 0.9
    assert _probe(rng.normal(size=(n, 4)), y, a) < 0.6


def _probe(feats: np.ndarray, y: np.ndarray, a: np.ndarray) -> float:
    half = len(y) // 2
    features = {"val": {"f": feats[:half]}, "bal": {"f": feats[half:]}}
    labels = {
        s: {"y": y[r], "a": a[r]} for s, r in (("val", slice(0, half)), ("bal", slice(half, None)))
    }
    (row,) = [r for r in probe_rows(features, labels, ["a"]) if r["split"] == "bal"]
    assert row["metric"] == "probe_accuracy[f]" and row["target"] == "a"
    return row["value"]
