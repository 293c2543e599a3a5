"""MIMM-X phantom checks on synth-mri: which property of the data the paper's pattern needs.

The issue's item 5 (docs/RESULTS.md, "MIMM-X, second round"). Runs ``configs/mimmx-mri.yaml``
with ``erm``, ``rebalance`` and ``mimmx`` (the paper's settings) under one change of the phantom
at a time, one seed, one thread, ``--epochs`` epochs:

- ``base``: the config as it is (sex and dataset, P(z = y) = 0.9, the phantom's strengths);
- ``one-confounder``: ``sex`` alone (MIMM's own single-confounder setting; ``dataset`` is still
  drawn, independently of y, as a nuisance factor);
- ``weak-confounders``: sex and dataset drawn at ``--weak`` times their strength (the phantom's
  calibration learns them 2-5x faster than age);
- ``larger-minority``: P(z = y) = ``--correlation`` instead of 0.9, so the cells where the
  confounders oppose y hold more images.

For every variant it prints val / inv / bal accuracy, the bal probes from mimmx's ``f_y`` and the
fresh-critic MI (``mimmx_table.rows``), and whether mimmx shows the paper's pattern there: inv
accuracy >= ERM's + 20 points and >= rebalance's - 2 (the issue's thresholds). A diagnostic of
the data, not a selection: nothing here picks a setting. Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/mimmx_phantom_checks.py --out runs/mimmx-checks \\
        [--epochs 5] [--seed 0] [--only VARIANT ...] [--weak 0.25] [--correlation 0.75]

A finished run (its ``results.csv``) is read, not rerun.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from mimmx_sweep import cli_run
from mimmx_table import rows

METHODS = ["erm", "rebalance", "mimmx"]


def variants(weak: float, correlation: float) -> dict[str, list[str]]:
    """Variant name -> config overrides."""
    return {
        "base": [],
        "one-confounder": ["dataset.attributes=[sex]"],
        "weak-confounders": [f"dataset.strengths.sex={weak}", f"dataset.strengths.dataset={weak}"],
        "larger-minority": [f"dataset.correlation={correlation}"],
    }


def run(folder: Path, overrides: list[str], epochs: int, seed: int) -> pd.DataFrame:
    methods = f"methods=[{','.join(METHODS)}]"
    common = [methods, f"seeds=[{seed}]", f"train.epochs={epochs}", "train.num_threads=1"]
    return pd.read_csv(cli_run(folder, common + overrides))


def table(name: str, df: pd.DataFrame) -> tuple[list[dict], str]:
    out = []
    for method in METHODS:
        r = rows(df[df["method"] == method])
        out.append({"variant": name, "method": method, **r})
    inv = {r["method"]: r["inv"] for r in out}
    pattern = inv["mimmx"] >= inv["erm"] + 20 and inv["mimmx"] >= inv["rebalance"] - 2
    verdict = (
        f"{name}: mimmx inv {inv['mimmx']:.1f} against ERM {inv['erm']:.1f} (+20: "
        f"{inv['erm'] + 20:.1f}) and rebalance {inv['rebalance']:.1f} (-2: "
        f"{inv['rebalance'] - 2:.1f}): paper's pattern {'shown' if pattern else 'not shown'}"
    )
    return out, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weak", type=float, default=0.25, help="confounder strength factor")
    parser.add_argument("--correlation", type=float, default=0.75, help="P(z = y), train / val")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    plan = variants(args.weak, args.correlation)
    names = args.only or list(plan)
    unknown = sorted(set(names) - set(plan))
    if unknown:
        sys.exit(f"unknown variant {unknown[0]}; choose from: {', '.join(plan)}")
    lines, verdicts = [], []
    for name in names:
        df = run(args.out / name, plan[name], args.epochs, args.seed)
        part, verdict = table(name, df)
        lines += part
        verdicts.append(verdict)
    print(pd.DataFrame(lines).round(1).to_markdown(index=False))
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
