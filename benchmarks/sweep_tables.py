"""The Markdown tables docs/RESULTS.md quotes from a sweep folder: the val-selected table with
bootstrap intervals, the paired differences against ERM and the selected draws' hyperparameters
(numbers from ``experiment/selection.py``; docs/methods.md, "Sweeps, selection and statistics").

    python benchmarks/sweep_tables.py runs/sweep-quick [--oracle]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

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
    secs = study.trials["seconds"].to_numpy(dtype=float)
    print(
        f"\ntrials: {len(secs)}, own time {np.nansum(secs):.0f} s, median {np.nanmedian(secs):.0f} s"
    )


if __name__ == "__main__":
    main()
