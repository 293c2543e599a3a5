"""Selection of a sweep's hyperparameter draw, on val only, and its statistics across seeds
(docs/methods.md, "Sweeps, selection and statistics"; the numbers from ``evaluation/stats.py``).

Per method the draw (``trial``) with the best mean over seeds of the config's ``select`` rule on
the val split is chosen (ties: the lower trial number, so the defaults win a tie); its seeds are
reported. An *oracle* selection, only when asked and always labelled, chooses by the same rule on
a held-out split instead (``test`` where the data has it, else ``bal``): the optimistic way some
papers select, shown for comparison and never as the result.

A results frame here is ``results.csv`` of a sweep (its ``trial`` column) or of a run (no
``trial`` column: every run is trial 0).
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation import stats

#: the results row each selection rule reads (split ``val``, target ``y``); None: the mean of
#: the ``group_accuracy[...]`` rows
RULE_METRIC = {
    "val_average": "accuracy",
    "val_worst_group": "worst_group_accuracy",
    "val_group_average": None,
}
#: what the selected table reports, where the data has the split
REPORTED = [
    ("val", "accuracy"),
    ("val", "worst_group_accuracy"),
    ("inv", "accuracy"),
    ("bal", "accuracy"),
    ("bal", "worst_group_accuracy"),
    ("test", "accuracy"),
    ("test", "worst_group_accuracy"),
]
BASELINE = "erm"


def with_trial(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with a ``trial`` column (0 for a plain run's rows)."""
    if "trial" in results.columns:
        return results
    out = results.copy()
    out.insert(1, "trial", 0)
    return out


def rule_scores(results: pd.DataFrame, rule: str, split: str = "val") -> pd.Series:
    """The rule's score per (method, trial, seed) on ``split``."""
    if rule not in RULE_METRIC:
        raise ShortcutlabError(f"select must be one of {', '.join(RULE_METRIC)}, not '{rule}'")
    r = with_trial(results)
    r = r[(r["split"] == split) & (r["target"] == "y")]
    metric = RULE_METRIC[rule]
    if metric is None:
        r = r[r["metric"].astype(str).str.startswith("group_accuracy[")]
    else:
        r = r[r["metric"] == metric]
    return r.groupby(["method", "trial", "seed"])["value"].mean()


def select_trials(results: pd.DataFrame, rule: str, split: str = "val") -> dict[str, int]:
    """Method -> the trial with the best mean score over seeds (ties: the lower trial)."""
    means = rule_scores(results, rule, split).groupby(["method", "trial"]).mean()
    chosen = {}
    for method, part in means.groupby(level="method", sort=False):
        part = part.droplevel("method").sort_index()
        chosen[str(method)] = int(part.idxmax()) if part.notna().any() else int(part.index[0])
    return chosen


def oracle_split(results: pd.DataFrame) -> str:
    splits = set(results["split"])
    return "test" if "test" in splits else "bal"


def per_seed(results: pd.DataFrame, method: str, trial: int, split: str, metric: str) -> pd.Series:
    """The value per seed of one (method, trial) on ``split``, target ``y``."""
    r = with_trial(results)
    part = r[
        (r["method"] == method)
        & (r["trial"] == trial)
        & (r["split"] == split)
        & (r["target"] == "y")
        & (r["metric"] == metric)
    ]
    return part.groupby("seed")["value"].mean()


def reported(results: pd.DataFrame) -> list[tuple[str, str]]:
    have = set(zip(results["split"], results["metric"]))
    return [key for key in REPORTED if key in have]


def primary_metric(results: pd.DataFrame) -> tuple[str, str]:
    """The number a comparison ranks on: the worst group on bal (else test), else inv accuracy."""
    have = set(zip(results["split"], results["metric"]))
    for key in (("bal", "worst_group_accuracy"), ("test", "worst_group_accuracy")):
        if key in have:
            return key
    return ("inv", "accuracy")


def selected_table(
    results: pd.DataFrame, rule: str, *, oracle: bool = False, order: list[str] | None = None
) -> pd.DataFrame:
    """One row per (selection, method, split, metric) of the selected trial's seeds: ``trial``,
    ``n``, ``mean``, ``std``, ``ci_low``, ``ci_high``. ``selection`` is ``val`` and, when
    ``oracle``, ``oracle (test-selected: <split>)``."""
    selections = [("val", select_trials(results, rule, "val"))]
    if oracle:
        split = oracle_split(results)
        selections.append((f"oracle (test-selected: {split})", select_trials(results, rule, split)))
    rows = []
    for label, chosen in selections:
        for method in order or list(chosen):
            if method not in chosen:
                continue
            for split, metric in reported(results):
                values = per_seed(results, method, chosen[method], split, metric)
                row = {"selection": label, "method": method, "trial": chosen[method]}
                row.update(split=split, metric=metric, **stats.summarize(values.to_numpy()))
                rows.append(row)
    return pd.DataFrame(rows)


def paired_table(
    results: pd.DataFrame,
    rule: str,
    *,
    baseline: str = BASELINE,
    order: list[str] | None = None,
) -> pd.DataFrame:
    """Each method's selected trial against the baseline's over the same seeds, per reported
    (split, metric): ``n``, ``mean_diff``, ``ci_low``, ``ci_high``, ``wilcoxon_p``; empty when
    the baseline is not in the results."""
    chosen = select_trials(results, rule)
    if baseline not in chosen:
        return pd.DataFrame()
    rows = []
    for method in order or list(chosen):
        if method == baseline or method not in chosen:
            continue
        for split, metric in reported(results):
            if split == "val":
                continue
            a = per_seed(results, method, chosen[method], split, metric)
            b = per_seed(results, baseline, chosen[baseline], split, metric)
            rows.append({"method": method, "split": split, "metric": metric, **stats.paired(a, b)})
    return pd.DataFrame(rows)


def block_scores(
    studies: dict[str, pd.DataFrame], rule: str, metric: tuple[str, str]
) -> tuple[pd.DataFrame, str]:
    """Blocks x methods of the selected trials' ``metric`` for ``rank_test``: one block per
    study (its seed mean) when there are several, else one per seed of the one study; and what
    the blocks are."""
    split, name = metric
    if len(studies) > 1:
        rows = {}
        for label, results in studies.items():
            chosen = select_trials(results, rule)
            rows[label] = {
                m: per_seed(results, m, t, split, name).mean() for m, t in chosen.items()
            }
        return pd.DataFrame(rows).T, "studies"
    (results,) = studies.values()
    chosen = select_trials(results, rule)
    cols = {m: per_seed(results, m, t, split, name) for m, t in chosen.items()}
    return pd.DataFrame(cols), "seeds"
