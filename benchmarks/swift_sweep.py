"""Choose SWiFT's hyperparameters on val alone (no inv/bal/test label is read).

For every setting of the grid, SWiFT runs on each given checkpoint with the data's ``external``
split (as ``shortcutlab debias`` does), and the debiased model is scored on ``val`` only:
fairlearn's equalized-odds gap of the attribute and the AUROC of the label, against the same
checkpoint before SWiFT. Criterion: the smallest mean val EOdds gap among the settings whose mean
val AUROC drop is at most ``--max-auroc-drop`` points (if none qualifies: the smallest AUROC drop).
Prints one line per setting and the choice as a ``hparams.swift`` mapping for the config. Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/swift_sweep.py configs/swift-derm.yaml \\
        runs/swift-derm/erm/seed_0/checkpoint.pt [more checkpoints] [--max-auroc-drop 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from shortcutlab.evaluation.metrics import auroc, fairness_gaps
from shortcutlab.experiment.config import MethodSpec, load_config
from shortcutlab.experiment.context import tensors_of
from shortcutlab.experiment.hparams import method_hparams
from shortcutlab.experiment.posthoc import external_rows, load_run_checkpoint, posthoc_context
from shortcutlab.experiment.runner import load_dataset, torch_threads
from shortcutlab.methods.swift import attribute_index, swift_config_from_hparams, swift_debias
from shortcutlab.store.layout import RunLayout

GRID = {
    "fairness": ["eodds", "eodds_abs"],
    "mask": ["soft", "hard"],
    "batch_size": [16, 64],
    # (step-1 lr, step-2 lr): the paper's, and ten times both
    "lrs": [(1e-4, 1e-3), (1e-3, 1e-2)],
    "beta": [0.1],
}


def settings() -> list[dict]:
    out = []
    for values in itertools.product(*GRID.values()):
        s = dict(zip(GRID, values))
        s["step1_lr"], s["step2_lr"] = s.pop("lrs")
        out.append(s)
    return out


def val_scores(method, val, ctx, j: int) -> tuple[float, float]:
    """(AUROC, EOdds gap) on val, in percent."""
    probs = torch.softmax(ctx.predict(method, val), 1).numpy()
    y, z = val["y"].numpy(), val["z"][:, j].numpy()
    gap = fairness_gaps(y, probs.argmax(1), z)["eodds_gap"]
    return 100 * auroc(probs, y), 100 * gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--max-auroc-drop", type=float, default=2.0)
    args = ap.parse_args()
    cfg = load_config(args.config)
    base = method_hparams(MethodSpec(name="swift"), cfg)
    with torch_threads(cfg.train.num_threads):
        table = load_dataset(cfg.dataset)
        ext = tensors_of(table.select(external_rows(table)))
        val = tensors_of(table.split("val"))
        rows = []
        for s in settings():
            per_ckpt = []
            for path in args.checkpoints:
                ckpt, method = load_run_checkpoint(path, table)
                seed = int(ckpt.seed)
                layout = RunLayout.single(Path(tempfile.gettempdir()), ckpt.name, seed)
                ctx = posthoc_context(table, method, cfg, layout)
                j = attribute_index(method.info, base.get("attribute"))
                auc0, gap0 = val_scores(method, val, ctx, j)
                swift_cfg = swift_config_from_hparams({**base, **s}, seed=seed)
                swift_debias(method.model, ext["x"], ext["y"], ext["z"][:, j], swift_cfg, "cpu")
                auc1, gap1 = val_scores(method, val, ctx, j)
                per_ckpt.append((auc0 - auc1, gap0, gap1))
            drop, gap0, gap1 = (float(np.mean(c)) for c in zip(*per_ckpt))
            rows.append({**s, "val_auroc_drop": drop, "val_eodds_before": gap0, "val_eodds": gap1})
            print(
                f"{json.dumps(s)}  val AUROC drop {drop:+.2f}  "
                f"val EOdds gap {gap0:.2f} -> {gap1:.2f}",
                flush=True,
            )
    ok = [r for r in rows if r["val_auroc_drop"] <= args.max_auroc_drop]
    best = (
        min(ok, key=lambda r: r["val_eodds"])
        if ok
        else min(rows, key=lambda r: r["val_auroc_drop"])
    )
    chosen = {
        k: best[k] for k in ("fairness", "mask", "batch_size", "step1_lr", "step2_lr", "beta")
    }
    print(
        f"qualifying settings (val AUROC drop <= {args.max_auroc_drop}): {len(ok)} of {len(rows)}"
    )
    print("choice:", json.dumps(chosen))


if __name__ == "__main__":
    main()
