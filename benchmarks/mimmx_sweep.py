"""MIMM-X settings sweep on synth-mri, chosen on val only (never inv / bal / test).

Runs ``configs/mimmx-mri.yaml`` once per setting (method ``mimmx`` only, one seed, one thread,
``--epochs`` epochs) and reads each run's ``results.csv``. Criterion: the val score of the
selected checkpoint under ``--select`` (the config's ``val_group_average`` by default: the mean of
the val groups' accuracies; or ``val_worst_group``); ties (within 0.5 points) are broken by the
lower val probe leakage, the mean probe accuracy ``f_y -> sex, dataset`` fitted and scored on val
(class-balanced weights, see ``evaluation/probes.py``). Prints one line per setting and the
choice; each line also shows inv / bal accuracy and the bal probes of f_y, to explain the
settings, never to choose among them. Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/mimmx_sweep.py --out /tmp/mimmx-sweep \\
        [--epochs 15] [--seed 0] [--backbone NAME] [--select RULE] [--only NAME ...]

A finished setting (its ``results.csv`` exists) is read, not rerun.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mimmx_table import rows  # the same per-run figures as the RESULTS tables

CONFIG = "configs/mimmx-mri.yaml"

# name -> overrides of hparams.mimmx (the config's values otherwise: the paper's N_B 6,
# alpha_Y 0.3, alpha_Z 0.8, beta_Y 0.01, lambda 1.5; MINE width 128, MINE lr 1e-4)
# Keys without a dot are hparams.mimmx.<key>; dotted keys are config paths (train.epochs, ...).
SETTINGS: dict[str, dict[str, object]] = {
    "paper": {"mi_given_y": False},
    "given_y": {"mi_given_y": True},
    "given_y_mine_lr_1e-3": {"mi_given_y": True, "mine_lr": 1e-3},
    # The knobs the issue names (training length, lambda, N_B, feature size), one at a time
    # from the paper's settings.
    "features_8_4": {"f_y_dim": 8, "f_z_dim": 4},
    "n_b_2": {"n_b": 2},
    "n_b_11": {"n_b": 11},
    "lambda_0": {"lambda": 0.0},  # heads only: what the split architecture does by itself
    "lambda_0.3": {"lambda": 0.3},
    "lambda_5": {"lambda": 5.0},
    "epochs_30": {"train.epochs": 30},
    # Small blocks made the MI term bite (f_y probes at chance) but lost the task; the
    # conditional term does not penalise a task block that carries y.
    "features_8_4_given_y": {"f_y_dim": 8, "f_z_dim": 4, "mi_given_y": True},
    # The conditional term below lambda 1.35, where keeping the task is cheaper than dropping it.
    "given_y_lambda_0.7": {"mi_given_y": True, "lambda": 0.7},
    "given_y_lambda_1": {"mi_given_y": True, "lambda": 1.0},
    "features_8_4_given_y_detach": {
        "f_y_dim": 8,
        "f_z_dim": 4,
        "mi_given_y": True,
        "mi_detach_z": True,
    },
    # The task block first (ERM on f_y), then the full loss: f_y holds age before the
    # confounder heads make sex and dataset salient in the shared encoder.
    "warmup_5": {"warmup_epochs": 5},
    "warmup_5_given_y": {"warmup_epochs": 5, "mi_given_y": True},
}


def cli_run(folder: Path, overrides: list[str]) -> Path:
    """``shortcutlab run CONFIG --out FOLDER -q OVERRIDES`` unless FOLDER holds results.csv."""
    if not (folder / "results.csv").exists():
        args = [sys.executable, "-m", "shortcutlab.cli", "run", CONFIG, "--out", str(folder), "-q"]
        print(" ".join(args[2:] + overrides), flush=True)
        subprocess.run(args + overrides, check=True)
    return folder / "results.csv"


def run(
    name: str, overrides: dict[str, object], out: Path, epochs: int, seed: int, extra: list[str]
) -> Path:
    return cli_run(
        out / name,
        [
            "methods=[mimmx]",
            f"seeds=[{seed}]",
            f"train.epochs={epochs}",
            "train.num_threads=1",
            *extra,
            *[f"{k}={v}" if "." in k else f"hparams.mimmx.{k}={v}" for k, v in overrides.items()],
        ],
    )


def val_criteria(path: Path, criterion: str) -> tuple[float, float]:
    df = pd.read_csv(path)
    val = df[df["split"] == "val"]
    of_y = val[val["target"] == "y"]
    if criterion == "group_average":
        crit = of_y[of_y["metric"].str.startswith("group_accuracy[")]["value"].mean()
    else:
        crit = of_y[of_y["metric"] == criterion]["value"].mean()
    probes = val[val["metric"] == "probe_accuracy[f_y]"]["value"]
    return float(crit), float(probes.mean())


def label_information(counts_csv: Path) -> str:
    """What the training cells alone fix, in nats: I(y; z) over the joint confounder label z,
    H(z | y), and the lambda above which the unconditional MI term (at least lambda * I(y; z)
    for a task block that predicts y) costs more than dropping the task (log 2)."""
    from scipy.stats import entropy
    from sklearn.metrics import mutual_info_score

    counts = pd.read_csv(counts_csv)
    y = counts["group"].str.extract(r"^y=(\d+)")[0]
    z = counts["group"].str.replace(r"^y=\d+,", "", regex=True)
    cells = counts.pivot_table(index=y, columns=z, values="train", aggfunc="sum").fillna(0)
    mi = mutual_info_score(None, None, contingency=cells.to_numpy())
    h_z = entropy(cells.sum(axis=0).to_numpy())
    return (
        f"training cells: I(y; z) = {mi:.3f} nats, H(z | y) = {h_z - mi:.3f} nats; the "
        f"unconditional term exceeds log 2 for lambda > {np.log(2) / mi:.2f}"
    )


def diagnosis(path: Path, seed: int) -> str:
    """inv / bal accuracy and bal probes of f_y: printed to explain, never used to choose."""
    r = rows(pd.read_csv(path))
    probes = " ".join(f"{k.removeprefix('probe ')} {v:.0f}" for k, v in r.items() if "probe" in k)
    done = json.loads((path.parent / "mimmx" / f"seed_{seed}" / "done.json").read_text())
    return (
        f"[diagnosis only: acc val {r['val']:.1f} inv {r['inv']:.1f} bal {r['bal']:.1f}, "
        f"inv AUROC {r['inv AUROC']:.1f}, bal probes f_y -> {probes}; "
        f"epoch {done['selected_epoch']}, {done['compute']['seconds']:.0f} s]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--backbone", default=None, help="train.backbone override, e.g. small-cnn-gn"
    )
    parser.add_argument(
        "--select",
        default="val_group_average",
        choices=["val_worst_group", "val_group_average"],
        help="the runner's checkpoint rule, and the sweep's criterion on val",
    )
    args = parser.parse_args()
    names = args.only or list(SETTINGS)
    extra = [f"select={args.select}"]
    if args.backbone:
        extra.append(f"train.backbone={args.backbone}")
    criterion = {
        "val_worst_group": "worst_group_accuracy",
        "val_group_average": "group_average",
    }[args.select]
    scores = {}
    for name in names:
        path = run(name, SETTINGS[name], args.out, args.epochs, args.seed, extra)
        scores[name] = val_criteria(path, criterion)
        crit, leak = scores[name]
        print(
            f"{name:22s} val {criterion} {100 * crit:5.1f}  val probe f_y {100 * leak:5.1f}  "
            + diagnosis(path, args.seed),
            flush=True,
        )
    best = max(scores.values(), key=lambda s: s[0])[0]
    tied = [n for n in names if scores[n][0] >= best - 0.005]
    choice = min(tied, key=lambda n: scores[n][1])
    print(f"choice: {choice} {SETTINGS[choice]}")
    print(label_information(args.out / names[0] / "split_counts.csv"))


if __name__ == "__main__":
    main()
