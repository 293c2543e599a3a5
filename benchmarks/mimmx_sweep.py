"""MIMM-X settings sweep on synth-mri, chosen on val only (never inv / bal / test).

Runs ``configs/mimmx-mri.yaml`` once per setting (method ``mimmx`` only, one seed, one thread,
``--epochs`` epochs) and reads each run's ``results.csv``. Criterion: the val worst-group accuracy
of the selected checkpoint (the runner's ``select: val_worst_group``); ties (within 0.5 points)
are broken by the lower val probe leakage, the mean probe accuracy ``f_y -> sex, dataset`` fitted
and scored on val (class-balanced weights, see ``evaluation/probes.py``). Prints one line per
setting and the choice. Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/mimmx_sweep.py --out /tmp/mimmx-sweep \\
        [--epochs 4] [--seed 0] [--only NAME ...]

A finished setting (its ``results.csv`` exists) is read, not rerun.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

CONFIG = "configs/mimmx-mri.yaml"

# name -> overrides of hparams.mimmx (the config's values otherwise: the paper's N_B 6,
# alpha_Y 0.3, alpha_Z 0.8, beta_Y 0.01, lambda 1.5; MINE width 128, MINE lr 1e-4)
SETTINGS: dict[str, dict[str, object]] = {
    "paper": {"mi_given_y": False},
    "given_y": {"mi_given_y": True},
    "given_y_mine_lr_1e-3": {"mi_given_y": True, "mine_lr": 1e-3},
}


def run(name: str, overrides: dict[str, object], out: Path, epochs: int, seed: int) -> Path:
    folder = out / name
    if not (folder / "results.csv").exists():
        args = [
            sys.executable,
            "-m",
            "shortcutlab.cli",
            "run",
            CONFIG,
            "--out",
            str(folder),
            "-q",
            "methods=[mimmx]",
            f"seeds=[{seed}]",
            f"train.epochs={epochs}",
            "train.num_threads=1",
            *[f"hparams.mimmx.{k}={v}" for k, v in overrides.items()],
        ]
        print(" ".join(args[2:]), flush=True)
        subprocess.run(args, check=True)
    return folder / "results.csv"


def val_criteria(path: Path) -> tuple[float, float]:
    df = pd.read_csv(path)
    val = df[df["split"] == "val"]
    worst = val[(val["metric"] == "worst_group_accuracy") & (val["target"] == "y")]["value"].mean()
    probes = val[val["metric"] == "probe_accuracy[f_y]"]["value"]
    return float(worst), float(probes.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    names = args.only or list(SETTINGS)
    scores = {}
    for name in names:
        path = run(name, SETTINGS[name], args.out, args.epochs, args.seed)
        scores[name] = val_criteria(path)
        worst, leak = scores[name]
        print(f"{name:28s} val worst-group {100 * worst:5.1f}  val probe f_y {100 * leak:5.1f}")
    best = max(scores.values(), key=lambda s: s[0])[0]
    tied = [n for n in names if scores[n][0] >= best - 0.005]
    choice = min(tied, key=lambda n: scores[n][1])
    print(f"choice: {choice} {SETTINGS[choice]}")


if __name__ == "__main__":
    main()
