"""One HTML report over sweeps and runs (``shortcutlab compare``; a sweep's own ``report.html``).

The numbers come from ``experiment/selection.py`` and ``evaluation/stats.py`` (docs/methods.md,
"Sweeps, selection and statistics"); this module lays them out: per study the selected table
with bootstrap intervals (and the oracle selection when asked, labelled), paired differences
against ERM (table and plot) and a hyperparameter-sensitivity plot per method (val score and
inv accuracy against each hyperparameter the sweep varied); over all studies a rank plot
(mean ranks; Friedman, Nemenyi's critical difference). Figures also go to
``OUT/figures/report_<name>.pdf`` and ``.png``, as in ``report/build.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.ticker import MaxNLocator

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation import stats
from shortcutlab.experiment import selection
from shortcutlab.report import figures
from shortcutlab.report.build import _b64, html_table
from shortcutlab.store.layout import ExperimentLayout
from shortcutlab.store.results import read_results, write_text_atomic
from shortcutlab.store.sweep_layout import SweepLayout

_LABELS = {"accuracy": "acc", "worst_group_accuracy": "worst group"}
_NOT_HPARAMS = {"method", "trial", "seed", "status", "seconds", "error"}


@dataclass
class Study:
    """One input folder: its results (``trial`` column), trials and config."""

    label: str
    root: Path
    results: pd.DataFrame
    trials: pd.DataFrame
    config: dict = field(default_factory=dict)

    @property
    def select(self) -> str:
        return str(self.config.get("select") or "val_worst_group")


def read_study(root: str | Path, label: str | None = None) -> Study:
    """A sweep folder (``trials.csv``) or a run folder (every run is trial 0)."""
    root = Path(root)
    layout = ExperimentLayout(root)
    if not layout.results.is_file():
        raise ShortcutlabError(f"{root} has no results.csv; give finished run or sweep folders")
    results = selection.with_trial(read_results(layout.results))
    results["method"] = results["method"].astype(str)
    if SweepLayout.is_sweep(root):
        trials = pd.read_csv(SweepLayout(root).trials_csv)
    else:
        keys = results[["method", "trial", "seed"]].drop_duplicates()
        trials = keys.assign(status="done")
    config = {}
    if layout.config.is_file():
        config = yaml.safe_load(layout.config.read_text()) or {}
    dataset = (config.get("dataset") or {}).get("name", "")
    name = label or (f"{root.name} ({dataset})" if dataset else root.name)
    return Study(name, root, results, trials, config if isinstance(config, dict) else {})


def _pct_ci(row) -> str:
    if not np.isfinite(row["mean"]):
        return "n/a"
    text = f"{100 * row['mean']:.1f}"
    if np.isfinite(row["std"]):
        text += f" ± {100 * row['std']:.1f}"
    if np.isfinite(row["ci_low"]):
        text += f" [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"
    return text


def selected_html_table(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """The selected table of one selection (``label``) as strings: mean ± std [95% CI] in %."""
    part = table[table["selection"] == label]
    if part.empty:
        return pd.DataFrame()
    out = {}
    for method, rows in part.groupby("method", sort=False):
        cells = {"trial": str(int(rows["trial"].iloc[0])), "seeds": str(int(rows["n"].max()))}
        for _, row in rows.iterrows():
            cells[f"{row['split']} {_LABELS.get(row['metric'], row['metric'])}"] = _pct_ci(row)
        out[method] = cells
    df = pd.DataFrame(out).T
    df.index.name = "method"
    return df


def paired_html_table(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    rows = []
    for _, r in table.iterrows():
        diff = "n/a"
        if np.isfinite(r["mean_diff"]):
            diff = f"{100 * r['mean_diff']:+.1f}"
            if np.isfinite(r["ci_low"]):
                diff += f" [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
        p = "n/a (< 5 seeds)" if not np.isfinite(r["wilcoxon_p"]) else f"{r['wilcoxon_p']:.3g}"
        what = f"{r['split']} {_LABELS.get(r['metric'], r['metric'])}"
        rows.append({"method": r["method"], "metric": what, "seeds": int(r["n"])})
        rows[-1].update({"difference (points) [95% CI]": diff, "Wilcoxon p": p})
    return pd.DataFrame(rows).set_index(["method", "metric"])


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def paired_figure(table: pd.DataFrame, results: pd.DataFrame, rule: str, colors: dict):
    """Each method's selected trial minus ERM's, per seed (dots) and mean with its CI (bar)."""
    if table.empty:
        return None
    keys = list(dict.fromkeys(zip(table["split"], table["metric"])))
    methods = list(dict.fromkeys(table["method"]))
    chosen = selection.select_trials(results, rule)
    fig = figures._figure(2.6 * len(keys) + 1, 0.45 * len(methods) + 1.6)
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    for ax, (split, metric) in zip(axes, keys):
        part = table[(table["split"] == split) & (table["metric"] == metric)]
        for i, (_, r) in enumerate(part.iterrows()):
            m = r["method"]
            a = selection.per_seed(results, m, chosen[m], split, metric)
            b = selection.per_seed(results, selection.BASELINE, chosen["erm"], split, metric)
            common = a.index.intersection(b.index)
            diffs = 100 * (a.loc[common] - b.loc[common])
            ax.scatter(diffs, np.full(len(diffs), i), s=14, color=colors.get(m), alpha=0.6)
            lo, hi = 100 * r["ci_low"], 100 * r["ci_high"]
            if np.isfinite(lo):
                ax.plot([lo, hi], [i, i], color=colors.get(m), lw=2.5)
            ax.plot([100 * r["mean_diff"]], [i], marker="D", color="black", ms=5)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{split} {_LABELS.get(metric, metric)}", fontsize=9)
        ax.set_xlabel("method - erm (points)")
        ax.set_yticks(range(len(part)), list(part["method"]))
    return fig


def _numeric(values: pd.Series) -> pd.Series | None:
    out = pd.to_numeric(values, errors="coerce")
    return out if out.notna().all() else None


def sensitivity_figure(study: Study, method: str, rule: str):
    """Val score (the ``select`` rule) and inv accuracy against each hyperparameter the sweep
    varied for ``method``: one dot per (trial, seed), a line through the trial means."""
    trials = study.trials[(study.trials["method"] == method) & (study.trials["status"] == "done")]
    varied = []
    for col in trials.columns:
        if col in _NOT_HPARAMS or trials[col].nunique(dropna=True) < 2:
            continue
        if _numeric(trials[col]) is not None:
            varied.append(col)
    if not varied:
        return None
    val = selection.rule_scores(study.results, rule).rename("val")
    inv = (
        study.results[
            (study.results["split"] == "inv")
            & (study.results["target"] == "y")
            & (study.results["metric"] == "accuracy")
        ]
        .groupby(["method", "trial", "seed"])["value"]
        .mean()
        .rename("inv")
    )
    scores = pd.concat([val, inv], axis=1).reset_index()
    scores = scores[scores["method"] == method].merge(trials, on=["method", "trial", "seed"])
    fig = figures._figure(2.7 * len(varied) + 0.6, 2.6)
    axes = fig.subplots(1, len(varied), sharey=True, squeeze=False)[0]
    for ax, col in zip(axes, varied):
        x = pd.to_numeric(scores[col])
        for what, color, name in (
            ("val", "#1f77b4", f"val ({rule})"),
            ("inv", "#d62728", "inv accuracy"),
        ):
            if what not in scores or scores[what].isna().all():
                continue
            ax.scatter(x, 100 * scores[what], s=12, color=color, alpha=0.5)
            means = scores.assign(_x=x).groupby("trial").agg(x=("_x", "first"), y=(what, "mean"))
            means = means.sort_values("x")
            ax.plot(means["x"], 100 * means["y"], color=color, marker="o", ms=4, label=name)
        if (x > 0).all() and x.max() / max(x.min(), 1e-300) > 20:
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_xlabel(col)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{method}: sensitivity to its hyperparameters", fontsize=10)
    return fig


def rank_figure(test: stats.RankTest, blocks: str):
    """Critical-difference diagram (scikit-posthocs) where Nemenyi's test ran, else the mean
    ranks as bars."""
    if test.nemenyi is not None:
        import scikit_posthocs as sp

        fig = figures._figure(7, 0.3 * len(test.mean_ranks) + 1.6)
        ax = fig.add_subplot(1, 1, 1)
        sp.critical_difference_diagram(test.mean_ranks, test.nemenyi, ax=ax)
        ax.set_title(
            f"mean rank over {len(test.ranks)} {blocks} (1 = best); bars join methods that "
            "Nemenyi's test does not separate (alpha 0.05)",
            fontsize=8,
        )
        return fig
    fig = figures._figure(6, 0.35 * len(test.mean_ranks) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    ranks = test.mean_ranks.sort_values()
    ax.barh(list(ranks.index), list(ranks.values), color="#888")
    ax.invert_yaxis()
    ax.set_xlabel(f"mean rank over {len(test.ranks)} {blocks} (1 = best)")
    return fig


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
@dataclass
class _Fig:
    name: str
    src: str
    caption: str


def _save(out: ExperimentLayout, name: str, fig, caption: str) -> _Fig | None:
    if fig is None:
        return None
    pdf, png = out.report_figure(name, "pdf"), out.report_figure(name, "png")
    return _Fig(name, _b64(figures.save_figure(fig, pdf, png)), caption)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60]


def _style() -> str:
    """The run report's stylesheet (``templates/report.html``), so both pages look alike."""
    source = (Path(__file__).parent / "templates" / "report.html").read_text()
    found = re.search(r"<style>.*?</style>", source, re.S)
    return found.group(0) if found else ""


def build_comparison(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    oracle: bool = False,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write ``out/report.html`` (and its figures) over the sweeps and runs in ``dirs``."""
    if not dirs:
        raise ShortcutlabError("give one or more run or sweep folders to compare")
    studies = [read_study(d, (labels or [None] * len(dirs))[i]) for i, d in enumerate(dirs)]
    if len({s.label for s in studies}) < len(studies):
        studies = [
            Study(f"{i + 1}: {s.label}", s.root, s.results, s.trials, s.config)
            for i, s in enumerate(studies)
        ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layout = ExperimentLayout(out)
    order = list(
        dict.fromkeys(
            m for s in studies for m in figures.method_order(s.config, s.results["method"])
        )
    )
    colors = figures.method_colors(order)
    sections = []
    for study in studies:
        rule = study.select
        m_order = [m for m in order if m in set(study.results["method"])]
        selected = selection.selected_table(study.results, rule, oracle=oracle, order=m_order)
        tables = [("selected on val", selected_html_table(selected, "val"))]
        if oracle:
            label = next((x for x in selected["selection"].unique() if x != "val"), None)
            if label:
                tables.append((label, selected_html_table(selected, label)))
        paired = selection.paired_table(study.results, rule, order=m_order)
        slug = _slug(study.label)
        figs = [
            _save(
                layout,
                f"paired_{slug}",
                paired_figure(paired, study.results, rule, colors),
                "Each method's selected draw minus ERM's selected draw, seed by seed (dots); "
                "the black diamond is the mean difference and the bar its 95% bootstrap "
                "interval over seeds.",
            )
        ]
        for m in m_order:
            figs.append(
                _save(
                    layout,
                    f"sensitivity_{slug}_{_slug(m)}",
                    sensitivity_figure(study, m, rule),
                    f"{m}: the val score that selects ({rule}, blue) and inv accuracy (red) "
                    "of every (draw, seed), the lines through each draw's seed mean.",
                )
            )
        status = study.trials["status"].value_counts().to_dict() if len(study.trials) else {}
        sections.append(
            {
                "label": study.label,
                "root": str(study.root),
                "rule": rule,
                "status": ", ".join(f"{v} {k}" for k, v in status.items()),
                "tables": [(t, html_table(df, colors)) for t, df in tables if not df.empty],
                "paired": html_table(paired_html_table(paired), colors),
                "figs": [f for f in figs if f is not None],
            }
        )
    rank = _rank_section(studies, layout, colors)
    env = Environment(
        loader=PackageLoader("shortcutlab", "report/templates"), autoescape=select_autoescape()
    )
    page = env.get_template("compare.html").render(
        title="shortcutlab comparison: " + ", ".join(s.label for s in studies),
        style=_style(),
        legend=[(m, colors[m]) for m in order],
        sections=sections,
        rank=rank,
        oracle=oracle,
        min_wilcoxon=stats.MIN_WILCOXON_PAIRS,
    )
    write_text_atomic(page, layout.report)
    return layout.report


def _rank_section(studies: list[Study], layout: ExperimentLayout, colors: dict) -> dict | None:
    metric = selection.primary_metric(studies[0].results)
    by_label = {s.label: s.results for s in studies}
    scores, blocks = selection.block_scores(by_label, studies[0].select, metric)
    if scores.shape[1] < 2 or scores.dropna().shape[0] < 1:
        return None
    test = stats.rank_test(scores)
    what = f"{metric[0]} {_LABELS.get(metric[1], metric[1])}"
    fig = _save(
        layout,
        "ranks",
        rank_figure(test, blocks),
        f"Methods ranked on {what} of the val-selected draw within each of "
        f"{len(test.ranks)} {blocks}.",
    )
    text = f"Mean rank on {what} over {len(test.ranks)} {blocks}"
    if np.isfinite(test.friedman_p):
        text += (
            f"; Friedman chi2 = {test.friedman_stat:.2f}, p = {test.friedman_p:.3g}; "
            f"Nemenyi critical difference {test.critical_difference:.2f} ranks (alpha 0.05)"
        )
    else:
        text += " (Friedman's test needs 3 or more methods and 2 or more blocks)"
    table = pd.DataFrame({"mean rank": test.mean_ranks.map(lambda v: f"{v:.2f}")})
    table.index.name = "method"
    return {"text": text, "fig": fig, "table": html_table(table, colors), "blocks": blocks}
