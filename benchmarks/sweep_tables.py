"""The Markdown tables docs/RESULTS.md quotes from a sweep folder: the val-selected table with
bootstrap intervals, the paired differences against ERM, the selected draws' hyperparameters,
the ranks on the primary metric within each seed (Friedman, Nemenyi's critical difference) and
what every draw scored (seed means) (numbers from ``experiment/selection.py`` and
``evaluation/stats.py``; docs/methods.md, "Sweeps, selection and statistics").

    python benchmarks/sweep_tables.py runs/sweep-quick [--oracle]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from shortcutlab.evaluation.stats import rank_test
from shortcutlab.experiment import selection
from shortcutlab.report.compare import paired_html_table, read_study, selected_html_table
from shortcutlab.report.figures import method_order


def markdown(df: pd.DataFrame) -> str:
    df = df.reset_index()
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--oracle", action="store_true")
    args = parser.parse_args()
    study = read_study(args.folder)
    order = method_order(study.config, study.results["method"])
    rule = study.select
    table = selection.selected_table(study.results, rule, oracle=args.oracle, order=order)
    for label in table["selection"].unique():
        print(f"\n### selected: {label} ({rule})\n")
        print(markdown(selected_html_table(table, label)))
    print("\n### paired differences against erm (points)\n")
    print(markdown(paired_html_table(selection.paired_table(study.results, rule, order=order))))
    chosen = selection.select_trials(study.results, rule)
    trials = study.trials[study.trials["seed"] == study.trials["seed"].min()]
    print("\n### selected draws\n")
    rows = []
    for m in order:
        t = trials[(trials["method"] == m) & (trials["trial"] == chosen[m])].iloc[0]
        hp = {
            k: v
            for k, v in t.items()
            if k not in {"method", "trial", "seed", "status", "seconds", "error"} and pd.notna(v)
        }
        text = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items()
        )
        rows.append({"method": m, "trial": chosen[m], "hyperparameters": text})
    print(markdown(pd.DataFrame(rows).set_index("method")))
    print_ranks(study.results, rule, order)
    print_draws(study.results, rule, order)
    secs = study.trials["seconds"].to_numpy(dtype=float)
    print(
        f"\ntrials: {len(secs)}, own time {np.nansum(secs):.0f} s, median {np.nanmedian(secs):.0f} s"
    )


def print_ranks(results: pd.DataFrame, rule: str, order: list[str]) -> None:
    metric = selection.primary_metric(results)
    scores, blocks = selection.block_scores({"study": results}, rule, metric)
    test = rank_test(scores[[m for m in order if m in scores.columns]])
    print(f"\n### ranks on {metric[0]} {metric[1]} (blocks: {blocks})\n")
    ranks = ", ".join(f"{m} {r:.1f}" for m, r in test.mean_ranks.sort_values().items())
    print(f"mean ranks: {ranks}")
    print(
        f"Friedman chi2 = {test.friedman_stat:.2f}, p = {test.friedman_p:.3g}; Nemenyi critical "
        f"difference {test.critical_difference:.2f} ranks over {len(test.ranks)} blocks"
    )


def _pcts(means: pd.Series, trials: list[int]) -> str:
    values = [means.get(t, np.nan) for t in trials]
    return ", ".join("n/a" if np.isnan(v) else f"{100 * v:.1f}" for v in values)


def print_draws(results: pd.DataFrame, rule: str, order: list[str]) -> None:
    """Seed means of every draw: the selection score on val, inv accuracy, the primary metric."""
    trials = sorted(selection.with_trial(results)["trial"].unique())
    span = f"trials {trials[0]}-{trials[-1]}"
    score = selection.rule_scores(results, rule).groupby(["method", "trial"]).mean()
    primary = selection.primary_metric(results)
    rows = []
    for m in order:
        row = {"method": m, f"{rule} (selection), {span}": _pcts(score.get(m, pd.Series()), trials)}
        for split, metric in [("inv", "accuracy"), primary]:
            means = pd.Series(
                {t: selection.per_seed(results, m, t, split, metric).mean() for t in trials}
            )
            row[f"{split} {metric}, {span}"] = _pcts(means, trials)
        rows.append(row)
    print("\n### every draw (seed means, %)\n")
    print(markdown(pd.DataFrame(rows).set_index("method")))


if __name__ == "__main__":
    main()
