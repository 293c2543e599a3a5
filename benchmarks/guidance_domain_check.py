"""Which guidance makes MaskMedPaint's inpaintings look like the target domain? (no target labels)

Inpaints the first N source images of a config's training split with a fitted (cached) diffusion
model under each guidance setting and scores them with the domain check of ``run`` (a classifier
of real source vs real unlabelled target backgrounds, seen through the model's autoencoder).

PYTHONPATH=src python benchmarks/guidance_domain_check.py MODEL_DIR \\
    [--config configs/maskmedpaint-derm.yaml] [--n 128] [--grid out.png] \\
    '3.0' '{"domain": 3.0}' '{"y": 1.0, "domain": 3.0}'

A number is classifier-free guidance of the joint (class, target) condition, a JSON object
composable guidance per field. ``--autoencoded`` first scores the model's encode-decode of the
first N real images of the labelled ``target`` split (images only) with the check as it was
(raw real images) and as it is (real images rendered through the autoencoder). MODEL_DIR is a
``model-<key>`` folder of the generation cache or the ``model/`` folder that
``shortcutlab generate`` writes.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.runner import UNLABELLED_SPLIT, load_dataset
from shortcutlab.generative.domain_check import domain_target_rate
from shortcutlab.generative.maskmedpaint import TARGET
from shortcutlab.generative.model import ConditionalDiffusion
from shortcutlab.generative.sampling import inpaint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("guidance", nargs="*", help="a number or a JSON {field: scale} object")
    parser.add_argument("--autoencoded", action="store_true", help="score reconstructions first")
    parser.add_argument("--config", default="configs/maskmedpaint-derm.yaml")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", default="", help="write the first 8 inpaintings per setting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = load_dataset(load_config(args.config).dataset)
    train, target = table.split("train"), table.split(UNLABELLED_SPLIT)
    xs, ms = torch.from_numpy(train.images), torch.from_numpy(train.masks)
    ys = torch.tensor(train.meta["y"].to_numpy())
    real = torch.cat([xs, torch.from_numpy(target.images)])
    domain = torch.cat([torch.zeros(len(xs)), torch.ones(len(target))]).long()
    real_masks = torch.cat([ms, torch.from_numpy(target.masks)])
    model = ConditionalDiffusion.load(args.model_dir)
    if args.autoencoded:
        held = table.split("target")
        recon = model.reconstruct(torch.from_numpy(held.images[: args.n]))
        recon_masks = torch.from_numpy(held.masks[: args.n])
        for name, render in (("raw", None), ("rendered", model.reconstruct)):
            score = domain_target_rate(
                real, domain, real_masks, recon, recon_masks, 1, render=render
            )
            print(f"autoencoded real target images, {name} check: {json.dumps(score)}")
    rows = []
    for text in args.guidance:
        guidance = json.loads(text)
        out = []
        for start in range(0, args.n, 32):
            i = torch.arange(start, min(start + 32, args.n))
            cond = {"y": ys[i], "domain": TARGET}
            out.append(inpaint(model, xs[i], ms[i], cond, args.steps, 1.0, guidance, 1, i.tolist()))
        gen = torch.cat(out)
        score = domain_target_rate(
            real, domain, real_masks, gen, ms[: args.n], 1, render=model.reconstruct
        )
        print(f"guidance {text}: {json.dumps(score)}", flush=True)
        rows.append(np.concatenate(list(gen[:8].numpy().transpose(0, 2, 3, 1)), 1))
    if args.grid:
        from PIL import Image

        Image.fromarray(np.concatenate(rows, 0)).save(args.grid)


if __name__ == "__main__":
    main()
