"""Grounding against the phantoms' masks, beside a classifier's Grad-CAM (docs/RESULTS.md,
"Finding the shortcut"): the effusion token ``y`` on synth-cxr and the ``ruler`` token on
synth-derm; pixel AUROC, CNR, mIoU and mass in mask of the grounding heatmaps and of Grad-CAM
on the same images; images/s of grounding.

    PYTHONPATH=src .venv/bin/python benchmarks/grounding_eval.py --out runs/grounding \\
        [--train-steps 2000] [--n 32] [--classifier-epochs 5]

Targets (issue): pixel AUROC >= 0.80 for both tokens, CNR above Grad-CAM's. Each dataset trains a
diffusion model (saved to OUT/<dataset>/model, reused on a re-run) and an ERM classifier.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--classifier-epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--datasets", nargs="*", default=list(CASES))
    args = ap.parse_args()
    lines = []
    for name in args.datasets:
        token, attrs = CASES[name]
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
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
        ckpt = folder / "classifier" / "erm" / "seed_0" / "checkpoint.pt"
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
        )
        mean = frame[frame["image"] == "mean"].iloc[0]
        lines.append(
            f"| {name} | {token} | {mean['grounding_pixel_auroc']:.3f} | "
            f"{mean['grounding_cnr']:.3f} | {mean['grounding_miou']:.3f} | "
            f"{mean['grounding_mass_in_mask']:.3f} | {mean['gradcam_pixel_auroc']:.3f} | "
            f"{mean['gradcam_cnr']:.3f} | {mean['gradcam_mass_in_mask']:.3f} | "
            f"{mean['mask_share']:.3f} | {1 / frame['seconds_per_image'].iloc[0]:.2f} | "
            f"{time.perf_counter() - t0:.0f} |"
        )
        print(lines[-1], flush=True)
    header = (
        "| data | token | grounding AUROC | grounding CNR | grounding mIoU | grounding mass | "
        "Grad-CAM AUROC | Grad-CAM CNR | Grad-CAM mass | mask share | grounding images/s | "
        "seconds (incl. training) |\n|" + "---|" * 12
    )
    text = header + "\n" + "\n".join(lines) + "\n"
    (args.out / "grounding.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
