"""Audit extras: the vectorised bootstrap gaps equal fairlearn's; CIs cover the estimate; probes."""

from __future__ import annotations

import numpy as np
import pytest

from shortcutlab.evaluation.audit import bootstrap_fairness_gaps, fairness_gap_cis, probe_leakage
from shortcutlab.evaluation.metrics import fairness_gaps


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
    feats = np.c_[a + rng.normal(0, 0.3, n), rng.normal(size=(n, 3))]
    assert probe_leakage(feats[:500], a[:500], feats[500:], a[500:]) > 0.9
    noise = rng.normal(size=(n, 4))
    assert probe_leakage(noise[:500], a[:500], noise[500:], a[500:]) < 0.6
