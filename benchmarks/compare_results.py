"""Compare two runs' results.csv row by row (docs/PERFORMANCE.md and docs/RESULTS.md, the
identity checks of the runner/method seam and of precise BN).

Prints, per method, how many numbers are identical, how many differ and how many rows only one
run has, then accuracy and the degenerate flag on val/inv/bal side by side.

    .venv/bin/python benchmarks/compare_results.py RUN_A RUN_B
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from shortcutlab.store.layout import ExperimentLayout
from shortcutlab.store.results import read_results

KEY = ["method", "seed", "split", "target", "metric"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args()
    a, b = (read_results(ExperimentLayout(p).results) for p in (args.run_a, args.run_b))
    m = a.merge(b, on=KEY, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"]
    same = (both["value_a"] == both["value_b"]) | (both["value_a"].isna() & both["value_b"].isna())
    counts = (
        pd.DataFrame(
            {
                "identical": same.groupby(both["method"]).sum(),
                "different": (~same).groupby(both["method"]).sum(),
                "only A": (m["_merge"] == "left_only").groupby(m["method"]).sum(),
                "only B": (m["_merge"] == "right_only").groupby(m["method"]).sum(),
            }
        )
        .fillna(0)
        .astype(int)
    )
    print(counts.to_markdown())
    print(f"\nall: {int(same.sum())} of {len(m)} rows identical\n")
    keep = m[(m["target"] == "y") & m["metric"].isin(["accuracy", "degenerate"])]
    keep = keep[keep["split"].isin(["val", "inv", "bal"])]
    table = keep.pivot_table(
        index="method", columns=["metric", "split"], values=["value_a", "value_b"]
    )
    print(table.round(3).to_markdown())


if __name__ == "__main__":
    main()
