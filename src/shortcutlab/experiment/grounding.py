"""``shortcutlab ground``: diffusion cross-attention grounding of one condition token on a
dataset (``generative/grounding.py``; docs/methods.md section 8).

The diffusion model is conditioned on ``y`` and every attribute of the config (one token each).
``--model DIR`` loads a saved one (``ConditionalDiffusion.save``); otherwise one is trained on the
train split (autoencoder, then denoising) and saved to ``OUT/model`` for the next call. The
images grounded are rows of one split (default val) whose factor ``token`` is 1 (the finding, or
the shortcut, is drawn), each inverted under its own labels.

Writes ``OUT/heatmaps/<row>.png`` (the heatmap, 8-bit), ``OUT/grounding.csv`` (per image, and the
mean) with CNR, mIoU, pixel AUROC and mass in the mask against the phantom's factor mask (where the
data has one), the same scores of a classifier's Grad-CAM maps on the same images with
``--classifier CKPT`` (the paper's baseline), and ``OUT/overlay.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shortcutlab.data.counterfactual import has_exact_counterfactuals, true_factor_masks
from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.localization import cnr, mass_in_mask, miou, pixel_auroc
from shortcutlab.experiment.config import ExperimentConfig
from shortcutlab.experiment.runner import load_dataset, torch_threads
from shortcutlab.generative.grounding import GroundingParams, check_token, ground
from shortcutlab.store.results import write_csv_atomic

SCORES = {"cnr": cnr, "miou": miou, "pixel_auroc": pixel_auroc, "mass_in_mask": mass_in_mask}


def condition_fields(table: ImageTable) -> dict[str, int]:
    cards = table.attribute_cardinalities()
    return {"y": table.num_classes, **dict(zip(table.attributes, cards, strict=True))}


def fit_grounding_model(
    table: ImageTable,
    steps: int,
    seed: int = 0,
    progress=None,
    autoencoder_steps: int = 300,
    sink_token: bool = False,
):
    """A latent ``ConditionalDiffusion`` with one token per field (and a sink token before them
    if ``sink_token``), trained on the train split (its autoencoder first)."""
    from shortcutlab.generative.params import DiffusionParams
    from shortcutlab.generative.training import stage_callback, start_generator, train_diffusion

    params = DiffusionParams(autoencoder_steps=autoencoder_steps)
    train = table.split("train") if "train" in table.splits else table
    images = torch.from_numpy(np.ascontiguousarray(train.images))
    model = start_generator(images, condition_fields(table), params, seed, progress, sink_token)
    cond = {
        f: torch.tensor(train.meta[f].to_numpy(dtype=np.int64)) for f in model.conditioner.fields
    }
    train_diffusion(
        model,
        images,
        cond,
        steps,
        params.batch_size,
        params.lr,
        params.cond_dropout,
        seed=seed + 1,
        callback=stage_callback(progress, "diffusion"),
    )
    return model


def load_grounding_model(directory: Path, table: ImageTable):
    from shortcutlab.generative.model import ConditionalDiffusion

    model = ConditionalDiffusion.load(directory)
    if (model.image_size, model.in_channels) != (table.image_size, table.in_channels):
        raise ShortcutlabError(
            f"the diffusion model in {directory} was trained on {model.in_channels}-channel "
            f"{model.image_size}x{model.image_size} images, the data has {table.in_channels}-"
            f"channel {table.image_size}x{table.image_size}; train one for this data"
        )
    return model


def ground_dataset(
    cfg: ExperimentConfig,
    token: str,
    out: str | Path,
    model_dir: str | Path | None = None,
    split: str = "val",
    n: int = 32,
    params: GroundingParams | None = None,
    classifier: str | Path | None = None,
    train_steps: int = 2000,
    progress=None,
    autoencoder_steps: int = 300,
) -> pd.DataFrame:
    """Ground ``token`` on ``n`` images of ``split``; write heatmaps, grounding.csv, overlay.png;
    return the per-image scores (empty without factor masks). A model trained here starts from
    the config's first seed."""
    with torch_threads(cfg.train.num_threads):
        table = load_dataset(cfg.dataset)
        if token not in condition_fields(table):
            raise ShortcutlabError(
                f"--token must be y or an attribute of the config ({', '.join(table.attributes)}), "
                f"not '{token}'"
            )
        if split not in table.splits:
            raise ShortcutlabError(
                f"the data has no split '{split}'; it has {', '.join(table.splits)}"
            )
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if model_dir is not None:
            model = load_grounding_model(Path(model_dir), table)
        elif (out / "model" / "unet").is_dir():
            model = load_grounding_model(out / "model", table)
        else:
            model = fit_grounding_model(
                table, train_steps, cfg.seeds[0], progress, autoencoder_steps
            )
            model.save(out / "model")
        check_token(model, token)
        part = table.split(split)
        rows = np.flatnonzero(part.meta[token].to_numpy() == 1)[:n]
        part = part.select(rows)
        images = torch.from_numpy(np.ascontiguousarray(part.images))
        cond = {
            f: torch.tensor(part.meta[f].to_numpy(dtype=np.int64)) for f in model.conditioner.fields
        }
        t0 = time.perf_counter()
        result = ground(model, images, cond, token, params)
        seconds = time.perf_counter() - t0
        (out / "heatmaps").mkdir(exist_ok=True)
        from PIL import Image

        for i, h in enumerate(result.heatmap):
            Image.fromarray((h * 255).round().astype(np.uint8)).save(
                out / "heatmaps" / f"{i:04d}.png"
            )
        records = []
        maps = {"grounding": result.heatmap}
        if classifier is not None:
            maps["gradcam"] = _gradcam(classifier, table, part)
        masks = true_factor_masks(part, token) if has_exact_counterfactuals(part) else None
        for i in range(len(part)):
            rec = {"image": i, "split_row": int(rows[i])}
            if masks is not None:
                for name, heat in maps.items():
                    for key, fn in SCORES.items():
                        rec[f"{name}_{key}"] = fn(heat[i], masks[i])
                rec["mask_share"] = float(masks[i].mean())
            records.append(rec)
        frame = pd.DataFrame(records)
        if len(frame):
            mean = frame.drop(columns=["image", "split_row"]).mean().to_dict()
            frame = pd.concat([frame, pd.DataFrame([{"image": "mean", **mean}])], ignore_index=True)
        frame["token"] = token
        frame["seconds_per_image"] = seconds / max(len(part), 1)
        write_csv_atomic(frame, out / "grounding.csv")
        _overlay(part, result, masks, maps, token, out / "overlay.png")
        return frame


def _gradcam(classifier, table, part) -> np.ndarray:
    from shortcutlab.evaluation.attribution import attribution_maps
    from shortcutlab.experiment.posthoc import load_run_checkpoint

    _, method = load_run_checkpoint(classifier, table)
    return attribution_maps(method.model, part.images, "gradcam")


def _overlay(part, result, masks, maps, token, path, n: int = 8) -> None:
    from shortcutlab.plotting import png_bytes
    from shortcutlab.report.figures import plt

    n = min(n, len(part))
    if n == 0:
        return
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, n, figsize=(1.3 * n, 1.4 * rows), squeeze=False)
    for c in range(n):
        img = part.images[c]
        gray = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        for r, (name, heat) in enumerate([("image", None), *maps.items()]):
            ax = axes[r, c]
            ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
            if heat is not None:
                ax.imshow(heat[c], cmap="jet", alpha=0.45)
            if masks is not None and masks[c].any() and not masks[c].all():
                ax.contour(masks[c], levels=[0.5], colors="white", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.suptitle(f"grounding of token '{token}' (white: the phantom's {token} mask)", fontsize=8)
    fig.tight_layout()
    path.write_bytes(png_bytes(fig))
    plt.close(fig)
