"""Statistics across seeds and across studies (docs/methods.md, "Sweeps, selection and
statistics"), on scipy and scikit-posthocs.

- ``summarize``: mean, standard deviation and the 95% percentile bootstrap interval of the mean
  over seeds (``scipy.stats.bootstrap``).
- ``paired``: a method against a baseline over the seeds both have: the per-seed differences,
  their mean with a bootstrap interval and, from 5 seeds on, the Wilcoxon signed-rank p
  (``scipy.stats.wilcoxon``, exact for small samples). Its smallest possible two-sided p is
  2 / 2^n: 0.125 with 4 pairs (none is reported), 0.0625 with 5, 0.031 with 6.
- ``rank_test``: methods ranked within each block (a data set, a config or a seed), mean ranks,
  Friedman's test (``scipy.stats.friedmanchisquare``), Nemenyi's post-hoc p-values
  (``scikit_posthocs.posthoc_nemenyi_friedman``) and the critical difference of the mean ranks
  (Demsar 2006: q_alpha sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile over
  sqrt 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
MIN_WILCOXON_PAIRS = 5


def bootstrap_ci(
    values, *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) under two values, (v, v) when all
    values are equal."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(values, *, seed: int = 0) -> dict[str, float]:
    """``n``, ``mean``, ``std`` (ddof 1) and ``ci_low``/``ci_high`` of finite ``values``."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    lo, hi = bootstrap_ci(x, seed=seed)
    return {
        "n": len(x),
        "mean": float(x.mean()) if len(x) else float("nan"),
        "std": float(x.std(ddof=1)) if len(x) > 1 else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
    }


def paired(method: pd.Series, baseline: pd.Series, *, seed: int = 0) -> dict[str, float]:
    """``method - baseline`` over their common index (seeds): ``n``, ``mean_diff``, its
    bootstrap ``ci_low``/``ci_high`` and ``wilcoxon_p`` (nan under 5 pairs)."""
    common = method.index.intersection(baseline.index)
    diff = (method.loc[common] - baseline.loc[common]).astype(float).dropna()
    lo, hi = bootstrap_ci(diff.to_numpy(), seed=seed)
    p = float("nan")
    if len(diff) >= MIN_WILCOXON_PAIRS:
        p = 1.0 if np.all(diff == 0) else float(stats.wilcoxon(diff.to_numpy()).pvalue)
    return {
        "n": len(diff),
        "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "wilcoxon_p": p,
    }


@dataclass
class RankTest:
    """Mean ranks (1 = best) of methods over blocks, with Friedman's and Nemenyi's tests."""

    ranks: pd.DataFrame  # blocks x methods
    mean_ranks: pd.Series
    friedman_stat: float
    friedman_p: float
    nemenyi: pd.DataFrame | None  # methods x methods p-values
    critical_difference: float


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of mean ranks for ``k`` methods over ``n`` blocks."""
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    return float(q * np.sqrt(k * (k + 1) / (6.0 * n)))


def rank_test(scores: pd.DataFrame, alpha: float = 0.05) -> RankTest:
    """``scores``: blocks (rows) x methods (columns), higher is better; rows with a missing
    score are dropped. Friedman and Nemenyi need 3 methods and 2 blocks (else nan/None)."""
    scores = scores.dropna(axis=0, how="any")
    ranks = scores.rank(axis=1, ascending=False, method="average")
    k, n = scores.shape[1], scores.shape[0]
    stat = p = float("nan")
    nemenyi = None
    if k >= 3 and n >= 2:
        res = stats.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns])
        stat, p = float(res.statistic), float(res.pvalue)
        import scikit_posthocs as sp

        nemenyi = sp.posthoc_nemenyi_friedman(scores.to_numpy())
        nemenyi.index = nemenyi.columns = list(scores.columns)
    cd = critical_difference(k, n, alpha) if k >= 2 and n >= 1 else float("nan")
    return RankTest(ranks, ranks.mean(axis=0), stat, p, nemenyi, cd)
