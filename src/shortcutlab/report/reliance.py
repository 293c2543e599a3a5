"""The report's "Shortcut reliance" section: counterfactual flip rates and attribution mass
(``evaluation/reliance.py``, ``evaluation/attribution.py``; docs/methods.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shortcutlab.report import figures


def _pct(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{100 * v:.1f}"


def _methods(part: pd.DataFrame, order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(part["method"].astype(str)))
    return [m for m in (order or present) if m in present] + [
        m for m in present if m not in (order or present)
    ]


def _mean(part: pd.DataFrame, **match) -> float:
    sel = np.ones(len(part), bool)
    for k, v in match.items():
        sel &= part[k].astype(str).to_numpy() == str(v)
    values = part.loc[sel, "value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def reliance_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """(method, changed factor) x split: flip rate % [95% CI] and mean |delta p| (points)."""
    part = results[results["metric"].astype(str).str.startswith("cf_")]
    if part.empty:
        return pd.DataFrame()
    splits = figures.eval_splits(part)
    rows = {}
    for m in _methods(part, order):
        mp = part[part["method"] == m]
        for factor in dict.fromkeys(mp["target"].astype(str)):
            row = {}
            for s in splits:
                f = _mean(mp, target=factor, split=s, metric="cf_flip_rate")
                lo = _mean(mp, target=factor, split=s, metric="cf_flip_rate_ci_low")
                hi = _mean(mp, target=factor, split=s, metric="cf_flip_rate_ci_high")
                d = _mean(mp, target=factor, split=s, metric="cf_mean_abs_delta")
                row[f"{s} flip %"] = f"{_pct(f)} [{_pct(lo)}, {_pct(hi)}]"
                row[f"{s} |Δp|"] = _pct(d)
            rows[(m, factor)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "changed factor"])
    return table


def attribution_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """(method, factor) x attribution method: share of the map's mass on the factor's pixels
    (%), with the share a uniform map would put there."""
    part = results[results["metric"].astype(str).str.startswith("attribution_mass[")]
    if part.empty:
        return pd.DataFrame()
    share = results[results["metric"] == "factor_mask_share"]
    rows = {}
    for m in _methods(part, order):
        mp = part[part["method"] == m]
        for factor in dict.fromkeys(mp["target"].astype(str)):
            row = {}
            for metric in dict.fromkeys(mp["metric"].astype(str)):
                row[f"{metric[len('attribution_mass[') : -1]} mass %"] = _pct(
                    _mean(mp, target=factor, metric=metric)
                )
            row["uniform map %"] = _pct(_mean(share[share["method"] == m], target=factor))
            rows[(m, factor)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "factor's pixels"])
    return table


def reliance_figure(
    results: pd.DataFrame, order: Sequence[str], colors: dict[str, str]
) -> Figure | None:
    """One panel per changed factor: flip rate per split and method, 95% bootstrap intervals."""
    part = results[results["metric"].astype(str).str.startswith("cf_flip_rate")]
    if part.empty:
        return None
    factors = list(dict.fromkeys(part["target"].astype(str)))
    splits = figures.eval_splits(part)
    methods = [m for m in order if m in set(part["method"])]
    fig = figures._figure(min(13.0, 0.6 + len(factors) * max(3.0, len(splits) * 1.2)), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(factors), squeeze=False, sharey=True).ravel())
    labels = figures._value_labels(len(splits) * len(methods))
    for ax, factor in zip(axes, factors):
        pick = {
            k: figures._pick(part, k, factor)
            for k in ("cf_flip_rate", "cf_flip_rate_ci_low", "cf_flip_rate_ci_high")
        }

        def means(metric: str, m: str) -> list[float]:
            return [figures._mean(figures._cell(pick[metric], m, s)) for s in splits]  # noqa: B023

        values = {m: means("cf_flip_rate", m) for m in methods}
        intervals = {
            m: (means("cf_flip_rate_ci_low", m), means("cf_flip_rate_ci_high", m)) for m in methods
        }
        top = figures._grouped_bars(ax, splits, methods, colors, values, intervals, None, labels)
        figures._percent_axis(ax, top, labels)
        ax.set_title(f"only '{factor}' changed")
    axes[0].set_ylabel("predictions flipped (%)")
    figures._legend(fig, methods, colors)
    return fig
