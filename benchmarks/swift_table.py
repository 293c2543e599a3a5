"""The SWiFT / baselines table of docs/RESULTS.md from finished run and debias folders.

Reads every ``results.csv`` given (run folders' per-seed files or whole-run files, and ``debias``
folders) and prints, per method, mean ± std over seeds of: bal accuracy, bal AUROC, bal worst-group
accuracy, bal equalized-odds gap of ``--attribute`` (fairlearn), inv accuracy. For each debias
folder given with ``--debias`` it also prints SWiFT before -> after per seed: the bal EOdds gap and
its narrowing in percent, the bal AUROC change, and the compute fractions from ``compute.json``.
Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/swift_table.py runs/swift-derm/results.csv \\
        --debias runs/swift-derm-debias/seed_0 runs/swift-derm-debias/seed_1 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

COLUMNS = [
    ("bal acc", "bal", "y", "accuracy"),
    ("bal AUROC", "bal", "y", "auroc"),
    ("bal worst group", "bal", "y", "worst_group_accuracy"),
    ("bal EOdds gap", "bal", None, "eodds_gap"),
    ("inv acc", "inv", "y", "accuracy"),
]


def value(res: pd.DataFrame, split: str, target: str, metric: str) -> float:
    sel = res[(res.split == split) & (res.target == target) & (res.metric == metric)]
    return float(sel["value"].iloc[0]) * 100 if len(sel) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="*", help="results.csv files")
    ap.add_argument("--debias", nargs="*", default=[], help="debias output folders")
    ap.add_argument("--attribute", default="skin_tone")
    ap.add_argument("--seeds", type=int, nargs="*", help="only these seeds (default: all)")
    args = ap.parse_args()
    frames = [pd.read_csv(p) for p in args.results]
    frames += [pd.read_csv(Path(d) / "results.csv") for d in args.debias]
    res = pd.concat(frames, ignore_index=True).drop_duplicates()
    if args.seeds:
        res = res[res["seed"].isin(args.seeds)]
    rows = []
    for (method, seed), part in res.groupby(["method", "seed"], sort=False):
        row = {"method": method, "seed": seed}
        for name, split, target, metric in COLUMNS:
            row[name] = value(part, split, target or args.attribute, metric)
        rows.append(row)
    table = pd.DataFrame(rows)
    names = [c[0] for c in COLUMNS]
    agg = table.groupby("method", sort=False)
    out = agg[names].agg(
        lambda s: f"{s.mean():.1f} ± {s.std(ddof=1):.1f}" if len(s) > 1 else f"{s.mean():.1f}"
    )
    out.insert(0, "seeds", agg.size())
    print(out.to_markdown())

    if args.debias:
        print()
        lines = []
        for d in args.debias:
            r = pd.read_csv(Path(d) / "results.csv")
            comp = json.loads((Path(d) / "compute.json").read_text())
            before, after = sorted(r["method"].unique(), key=len)
            b, a = r[r.method == before], r[r.method == after]
            g0 = value(b, "bal", args.attribute, "eodds_gap")
            g1 = value(a, "bal", args.attribute, "eodds_gap")
            lines.append(
                {
                    "seed": int(r["seed"].iloc[0]),
                    "bal EOdds before": g0,
                    "after": g1,
                    "narrowing %": 100 * (g0 - g1) / g0,
                    "bal AUROC before": value(b, "bal", "y", "auroc"),
                    "AUROC after": value(a, "bal", "y", "auroc"),
                    "AUROC change": value(a, "bal", "y", "auroc") - value(b, "bal", "y", "auroc"),
                    "samples %": 100 * comp["samples_fraction"],
                    "seconds %": 100 * comp["seconds_fraction"],
                }
            )
        sw = pd.DataFrame(lines)
        sw.loc["mean"] = sw.mean(numeric_only=True)
        sw.loc["mean", "seed"] = float("nan")
        print(sw.to_markdown(floatfmt=".1f"))


if __name__ == "__main__":
    main()
