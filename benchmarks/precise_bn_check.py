"""Batch-norm collapse before and after precise BN (docs/RESULTS.md, "Batch-norm statistics").

Runs the same training with ``train.precise_bn=0`` (the running averages kept during training,
as before the fix) and with the default, on
  1. an easy task: 480 training images of 32 px whose class is a bright square, 5 epochs,
     the default ``small-cnn`` (seeds 0-2);
  2. the quick preset's ERM with ``train.epochs=2`` (seed 0);
and prints val / inv / bal accuracy and the degenerate flag of each as a Markdown table.

    .venv/bin/python benchmarks/precise_bn_check.py [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from shortcutlab.data.table import ImageTable
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import ExperimentConfig, load_config


def square_table(n: int = 960, size: int = 32, seed: int = 0) -> ImageTable:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    img = rng.normal(80, 20, (n, 1, size, size))
    img[y == 1, :, 12:20, 12:20] += 100
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["bal"] * (n - n // 2 - n // 4))
    return ImageTable(
        np.clip(img, 0, 255).astype(np.uint8), pd.DataFrame({"y": y, "split": split}), [], 2
    )


def scores(res: pd.DataFrame) -> dict[str, float]:
    acc = res[(res.target == "y") & (res.metric == "accuracy")].set_index("split")["value"]
    out = {s: 100 * acc[s] for s in ("val", "inv", "bal") if s in acc}
    out["degenerate"] = res[res.metric == "degenerate"]["value"].item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    rows = []
    for seed in (0, 1, 2):
        table = square_table(seed=seed)
        for pbn in (0, 1024):
            cfg = ExperimentConfig.model_validate(
                {
                    "dataset": {"name": "csv", "root": "unused", "attributes": []},
                    "train": {"epochs": 5, "precise_bn": pbn, "num_threads": args.threads},
                    "bootstrap": 0,
                }
            )
            res = runner.train_one(table, cfg, cfg.methods[0], seed, tempfile.mkdtemp())
            rows.append({"case": "bright square", "seed": seed, "precise_bn": pbn, **scores(res)})
    for pbn in (0, 1024):
        over = ["train.epochs=2", f"train.precise_bn={pbn}", f"train.num_threads={args.threads}"]
        cfg = load_config(None, "quick", [*over, "methods=[erm]"])
        res = runner.run_experiment(cfg, tempfile.mkdtemp())
        rows.append({"case": "quick, ERM, 2 epochs", "seed": 0, "precise_bn": pbn, **scores(res)})
    cols = ["case", "seed", "precise_bn", "val", "inv", "bal", "degenerate"]
    print(pd.DataFrame(rows).reindex(columns=cols).round(1).to_markdown(index=False))


if __name__ == "__main__":
    main()
