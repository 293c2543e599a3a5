"""Grounding with the cross-attention layer and inversion window chosen on val, scored on a
held-out split (docs/RESULTS.md, "Finding the shortcut"; docs/methods.md section 8: the layer
and timestep choice are parameters, chosen on val if changed).

For each ``benchmarks/grounding_eval.py`` seed folder: the pixel AUROC of the raw attention map
(``--val-steps`` inversion steps, no blur or Otsu) of every layer alone in
each window of ``grounding_diagnose.WINDOWS`` on the first 24 val images whose factor is 1
(``grounding_diagnose.layer_aurocs``); the best (layer, window) on val; then the full recipe
(heatmap, blur, Otsu, ``--steps`` inversion steps) with that choice and with the defaults, and
Grad-CAM of the folder's ERM classifier, on the first ``--n`` images of ``--split`` (never used
to choose) whose factor is 1. Prints one row per folder and the mean per data set.

    PYTHONPATH=src .venv/bin/python benchmarks/grounding_select.py \\
        runs/grounding/synth-cxr/seed_0 runs/grounding/synth-derm/seed_0 [--split bal] [--n 32]

Writes FOLDER/select-<split>/ (the chosen recipe's heatmaps and scores), FOLDER/default-<split>/
and FOLDER/select-<split>.json; a folder with that file is read, not rerun.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from grounding_diagnose import layer_aurocs  # benchmarks/, beside this script
from grounding_eval import CASES

from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.grounding import ground_dataset, load_grounding_model
from shortcutlab.experiment.runner import load_dataset
from shortcutlab.generative.grounding import GroundingParams

COLS = ["grounding_pixel_auroc", "grounding_cnr", "gradcam_pixel_auroc", "gradcam_cnr"]


def select(folder: Path, split: str, n: int, steps: int, val_steps: int) -> dict:
    done = folder / f"select-{split}.json"
    if done.exists():
        return json.loads(done.read_text())
    cfg = load_config(folder / "config.yaml")
    table = load_dataset(cfg.dataset)
    token = CASES[cfg.dataset.name][0]
    model_dir = folder / "ground" / "model"
    model = load_grounding_model(model_dir, table)
    scores = layer_aurocs(model, table.split("val"), token, val_steps)
    (layer, window), val_auroc = max(scores.items(), key=lambda kv: kv[1])
    ckpt = folder / "classifier" / "erm" / f"seed_{cfg.seeds[0]}" / "checkpoint.pt"
    row = {
        "data": cfg.dataset.name,
        "token": token,
        "seed": cfg.seeds[0],
        "layer": layer,
        "window": list(window),
        "val_auroc_of_choice": val_auroc,
    }
    for name, params in (
        ("default", GroundingParams(steps=steps)),
        ("select", GroundingParams(steps=steps, layers=(layer,), window=window)),
    ):
        frame = ground_dataset(
            cfg,
            token,
            folder / f"{name}-{split}",
            model_dir=model_dir,
            split=split,
            n=n,
            params=params,
            classifier=ckpt,
        )
        mean = frame[frame["image"] == "mean"].iloc[0]
        # Grad-CAM is the same on the same images: kept once, beside the defaults
        cols = COLS if name == "default" else [c for c in COLS if c.startswith("grounding")]
        row |= {f"{name} {c}": float(mean[c]) for c in cols}
    done.write_text(json.dumps(row, indent=1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="OUT/<dataset>/seed_<s>")
    ap.add_argument("--split", default="bal", help="the held-out split scored (not val)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50, help="inversion steps of the recipe")
    ap.add_argument("--val-steps", type=int, default=20, help="inversion steps of the choice")
    args = ap.parse_args()
    if args.split == "val":
        ap.error("--split must be a split the choice does not see, not val")
    torch.set_num_threads(1)
    rows = []
    for folder in args.folders:
        rows.append(select(folder, args.split, args.n, args.steps, args.val_steps))
        r = rows[-1]
        print(
            f"{r['data']} seed {r['seed']}: layer {r['layer']}, window {tuple(r['window'])} "
            f"(val AUROC {r['val_auroc_of_choice']:.3f})",
            flush=True,
        )
    frame = pd.DataFrame(rows)
    frame["window"] = frame["window"].map(tuple)
    means = frame.groupby(["data", "token"], sort=False).mean(numeric_only=True).reset_index()
    means["seed"], means["layer"] = "mean", None  # a mean layer index means nothing
    out = pd.concat([frame, means], ignore_index=True)
    print(f"\nscored on {args.split} (first {args.n} images whose factor is 1)\n")
    print(out.round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
