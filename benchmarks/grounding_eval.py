"""Grounding against the phantoms' masks, beside a classifier's Grad-CAM (docs/RESULTS.md,
"Finding the shortcut"): the effusion token ``y`` on synth-cxr and the ``ruler`` token on
synth-derm; pixel AUROC, CNR, mIoU and mass in mask of the grounding heatmaps and of Grad-CAM
on the same images; images/s of grounding.

    PYTHONPATH=src .venv/bin/python benchmarks/grounding_eval.py --out runs/grounding \\
        [--train-steps 2000] [--autoencoder-steps 300] [--n 32] [--classifier-epochs 5] [--seeds 0 1 2]

Targets (issue): pixel AUROC >= 0.80 for both tokens, CNR above Grad-CAM's. Each dataset trains a
diffusion model and an ERM classifier per seed (OUT/<dataset>/seed_<s>; a finished seed is
skipped on a re-run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.grounding import ground_dataset
from shortcutlab.experiment.runner import run_experiment
from shortcutlab.generative.grounding import GroundingParams

CASES = {"synth-cxr": ("y", ["site"]), "synth-derm": ("ruler", ["ruler"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/grounding"))
    ap.add_argument("--train-steps", type=int, default=2000)
    ap.add_argument("--autoencoder-steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--classifier-epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--datasets", nargs="*", default=list(CASES))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = ap.parse_args()
    cols = [
        "grounding_pixel_auroc",
        "grounding_cnr",
        "grounding_miou",
        "grounding_mass_in_mask",
        "gradcam_pixel_auroc",
        "gradcam_cnr",
        "gradcam_mass_in_mask",
        "mask_share",
    ]
    rows = []
    for name in args.datasets:
        token, attrs = CASES[name]
        for seed in args.seeds:
            folder = args.out / name / f"seed_{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            done = folder / "row.json"
            if done.exists():
                rows.append(json.loads(done.read_text()))
                print(_line(rows[-1], cols), flush=True)
                continue
            cfg_path = folder / "config.yaml"
            cfg_path.write_text(
                yaml.safe_dump(
                    {
                        "dataset": {
                            "name": name,
                            "size": args.size,
                            "image_size": 64,
                            "attributes": attrs,
                            "correlation": 0.95,
                        },
                        "methods": ["erm"],
                        "seeds": [seed],
                        "train": {
                            "epochs": args.classifier_epochs,
                            "batch_size": 128,
                            "num_threads": 1,
                            "augment": "none",
                        },
                    },
                    sort_keys=False,
                )
            )
            cfg = load_config(cfg_path)
            run_experiment(cfg, folder / "classifier", on_event=lambda m: None)
            ckpt = folder / "classifier" / "erm" / f"seed_{seed}" / "checkpoint.pt"
            t0 = time.perf_counter()
            frame = ground_dataset(
                cfg,
                token,
                folder / "ground",
                split="val",
                n=args.n,
                params=GroundingParams(steps=args.steps),
                classifier=ckpt,
                train_steps=args.train_steps,
                autoencoder_steps=args.autoencoder_steps,
            )
            mean = frame[frame["image"] == "mean"].iloc[0]
            row = {"data": name, "token": token, "seed": seed}
            row |= {c: float(mean[c]) for c in cols}
            row["images_per_s"] = 1 / float(frame["seconds_per_image"].iloc[0])
            row["seconds"] = time.perf_counter() - t0
            done.write_text(json.dumps(row, indent=1))
            rows.append(row)
            print(_line(row, cols), flush=True)
    header = (
        "| data | token | seed | grounding AUROC | grounding CNR | grounding mIoU | "
        "grounding mass | Grad-CAM AUROC | Grad-CAM CNR | Grad-CAM mass | mask share | "
        "grounding images/s | seconds (incl. training) |\n|" + "---|" * 13
    )
    frame = pd.DataFrame(rows)
    lines = [_line(r, cols) for r in rows]
    for name, part in frame.groupby("data", sort=False):
        mean = part.mean(numeric_only=True).to_dict()
        mean |= {"data": name, "token": part["token"].iloc[0], "seed": "mean"}
        lines.append(_line(mean, cols))
    text = header + "\n" + "\n".join(lines) + "\n"
    (args.out / "grounding.md").write_text(text)
    print(text)


def _line(row: dict, cols: list[str]) -> str:
    cells = [row["data"], row["token"], str(row["seed"])]
    cells += [f"{row[c]:.3f}" for c in cols]
    cells += [f"{row['images_per_s']:.2f}", f"{row['seconds']:.0f}"]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
