"""Why a grounding run misses (docs/RESULTS.md, "Finding the shortcut"): on one
``benchmarks/grounding_eval.py`` seed folder, the pixel AUROC of every cross-attention layer
alone in three inversion windows, and how much the token changes what the model generates
inside the factor's pixels against outside them.

    PYTHONPATH=src .venv/bin/python benchmarks/grounding_diagnose.py runs/grounding/synth-cxr/seed_0 \\
        [--sink]

``--sink`` first trains a second model like the folder's (same data, seed, steps), with a
learned sink token before the fields' (``LabelConditioner``), saves it to FOLDER/sink-model and
diagnoses that one. Images: the first 24 of val whose factor is 1 (the images the layer choice
may be made on; docs/methods.md section 8).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from grounding_eval import CASES  # benchmarks/grounding_eval.py, beside this script

from shortcutlab.data.counterfactual import true_factor_masks
from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.grounding import (
    SCORES,
    fit_grounding_model,
    load_grounding_model,
)
from shortcutlab.experiment.runner import load_dataset
from shortcutlab.generative.grounding import GroundingParams, attention_layers, ground
from shortcutlab.generative.sampling import sample

WINDOWS = [(0.0, 0.2), (0.4, 0.6), (0.8, 1.0)]


def layer_aurocs(
    model, split, token: str, steps: int, n: int = 24, show: bool = False
) -> dict[tuple[int, tuple[float, float]], float]:
    """Mean pixel AUROC of the raw map of every cross-attention layer alone in each of
    ``WINDOWS``, on the first ``n`` images of ``split`` whose ``token`` factor is 1;
    ``show`` prints the table as it goes."""
    part = split.select(np.flatnonzero(split.meta[token].to_numpy() == 1)[:n])
    images = torch.from_numpy(np.ascontiguousarray(part.images))
    cond = {
        f: torch.tensor(part.meta[f].to_numpy(dtype=np.int64)) for f in model.conditioner.fields
    }
    masks = true_factor_masks(part, token)
    if show:
        print("| layer | " + " | ".join(f"window {w}" for w in WINDOWS) + " |")
        print("|---" * (len(WINDOWS) + 1) + "|")
    out = {}
    for i, name in enumerate(attention_layers(model)):
        for win in WINDOWS:
            params = GroundingParams(steps=steps, layers=(i,), window=win)
            g = ground(model, images, cond, token, params)
            raw = g.raw
            out[i, win] = float(
                np.mean([SCORES["pixel_auroc"](raw[j], masks[j]) for j in range(len(raw))])
            )
        if show:
            cells = " | ".join(f"{out[i, w]:.3f}" for w in WINDOWS)
            print(f"| {i} ({name.split('.attn2')[0]}) | {cells} |", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="OUT/<dataset>/seed_<s> of grounding_eval.py")
    ap.add_argument("--sink", action="store_true")
    ap.add_argument("--train-steps", type=int, default=1000)
    ap.add_argument("--autoencoder-steps", type=int, default=150)
    ap.add_argument("--steps", type=int, default=20, help="inversion steps per diagnosis")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.folder / "config.yaml")
    table = load_dataset(cfg.dataset)
    token = CASES[cfg.dataset.name][0]
    if args.sink:
        where = args.folder / "sink-model"
        if (where / "unet").is_dir():
            model = load_grounding_model(where, table)
        else:
            model = fit_grounding_model(
                table,
                args.train_steps,
                cfg.seeds[0],
                autoencoder_steps=args.autoencoder_steps,
                sink_token=True,
            )
            model.save(where)
    else:
        model = load_grounding_model(args.folder / "ground" / "model", table)
    val = table.split("val")
    print(f"token {token}, 24 val images, sink token: {args.sink}")
    layer_aurocs(model, val, token, args.steps, show=True)
    # how much the token changes generated images inside the factor's pixels, against outside
    more = val.select(np.flatnonzero(val.meta[token].to_numpy() == 1)[:200])
    region = true_factor_masks(more, token).mean(0) > 0.05
    base = dict.fromkeys(model.conditioner.fields, 0)
    n = 24
    for guidance in (1.0, 3.0):
        on = sample(model, {**base, token: 1}, n, 25, guidance, list(range(n))).float()
        off = sample(model, {**base, token: 0}, n, 25, guidance, list(range(n))).float()
        diff = (on - off).abs().mean((0, 1)).numpy()
        print(
            f"guidance {guidance}: mean |x({token}=1) - x({token}=0)|, same noise, "
            f"{diff[region].mean():.2f} grey levels inside the factor's pixels "
            f"({region.mean():.1%} of the image), {diff[~region].mean():.2f} outside"
        )


if __name__ == "__main__":
    main()
