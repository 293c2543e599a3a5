"""The MIMM-X table of docs/RESULTS.md from run folders of ``shortcutlab run``.

For every method and seed found under the given run folders (``*/seed_*/results.csv``): accuracy
on val / inv / bal, the val -> inv drop, and the bal accuracy of the linear probes ``f_y -> sex``
and ``f_y -> dataset`` (``f`` for methods without blocks); then the mean and std over seeds.
Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/mimmx_table.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def rows(df: pd.DataFrame) -> dict[str, float]:
    def get(split: str, target: str, metric: str) -> float:
        sel = df[(df["split"] == split) & (df["target"] == target) & (df["metric"] == metric)]
        return 100 * float(sel["value"].iloc[0]) if len(sel) else float("nan")

    out = {s: get(s, "y", "accuracy") for s in ("val", "inv", "bal")}
    out["drop"] = out["val"] - out["inv"]
    for attr in ("sex", "dataset"):
        value = get("bal", attr, "probe_accuracy[f_y]")
        out[f"probe {attr}"] = value if value == value else get("bal", attr, "probe_accuracy[f]")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    table = []
    for run in args.runs:
        for path in sorted(run.glob("*/seed_*/results.csv")):
            df = pd.read_csv(path)
            label = f"{run.name}/{path.parent.parent.name}"
            table.append({"method": label, "seed": int(df["seed"].iloc[0]), **rows(df)})
    frame = pd.DataFrame(table)
    pd.set_option("display.width", 200)
    print(frame.round(1).to_string(index=False))
    cols = ["val", "inv", "bal", "drop", "probe sex", "probe dataset"]
    grouped = frame.groupby("method")[cols]
    mean, std = grouped.mean(), grouped.std().fillna(0.0)
    summary = pd.DataFrame(
        {c: [f"{m:.1f} +- {s:.1f}" for m, s in zip(mean[c], std[c])] for c in cols},
        index=mean.index,
    )
    summary.insert(0, "seeds", frame.groupby("method")["seed"].count())
    print()
    print(summary.to_string())


if __name__ == "__main__":
    main()
