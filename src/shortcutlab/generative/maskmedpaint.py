"""MaskMedPaint (Jin, Gerych, Ghassemi, ML4H 2024): target-domain backgrounds, pixel-exact ROI.

1. Stage 1: train (or fine-tune) the label-conditioned diffusion model on labelled source images
   under ``(y, domain=source)``; the paper's class prompt becomes the ``y`` token.
2. Stage 2: continue on a small set (default 100) of *unlabelled* target images under
   ``(y=null, domain=target)``, the paper's dummy domain token. Half of each stage-2 batch
   replays source images (our choice, against forgetting the class tokens).
3. Generation: for each source image, inpaint everything outside its ROI under
   ``(y, domain=target)``, several per image (strength, guidance, steps as parameters), with
   RePaint sampling; the ROI is pasted back exactly.

The ROI is the data's mask (``roi="data"``) or, with ``roi="grounding"`` (``dataset.roi``; for
data without ROI masks), the Otsu foreground of the ``y`` token's cross-attention grounding map
(``generative/grounding.py``) of each source image under its own class, computed with the same
fitted model after stage 2 (our choice: no second model; docs/methods.md section 8).

Baselines from the paper's code: ``text2img`` (same model, no mask, sample from noise under
``(y, target)``) and ``img2img`` (SDEdit at strength 0.5 under ``(y, target)``, no mask).
The generated set is written as a CSV dataset (``metadata.csv`` + PNGs) with provenance columns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.grounding import GroundingParams
from shortcutlab.generative.model import ConditionalDiffusion, Guidance
from shortcutlab.generative.params import DiffusionParams, GenerationParams
from shortcutlab.generative.sampling import inpaint, sample
from shortcutlab.generative.training import stage_callback, start_generator, train_diffusion

Progress = Callable[[str, int, int], None]  # (stage, done, total)
MODES = ("maskmedpaint", "text2img", "img2img")
ROI_SOURCES = ("data", "grounding")
SOURCE, TARGET = 0, 1  # domain token ids


def fit_generator(
    source: torch.Tensor,
    source_y: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    params: DiffusionParams,
    seed: int = 0,
    progress: Progress | None = None,
) -> ConditionalDiffusion:
    """Stages 0-2: autoencoder on all images, stage 1 on labelled source, stage 2 on target."""
    if len(source) == 0 or len(target) == 0:
        raise ShortcutlabError(
            "MaskMedPaint needs both source images and unlabelled target images."
        )
    fields = {"y": num_classes, "domain": 2}
    model = start_generator(torch.cat([source, target]), fields, params, seed, progress)
    common = dict(batch_size=params.batch_size, lr=params.lr, cond_dropout=params.cond_dropout)
    train_diffusion(
        model,
        source,
        {"y": source_y, "domain": SOURCE},
        params.stage1_steps,
        bf16=params.bf16,
        seed=seed + 1,
        callback=stage_callback(progress, "stage 1 (source, labelled)"),
        **common,
    )
    train_diffusion(
        model,
        target,
        {"domain": TARGET},
        params.stage2_steps,
        bf16=params.bf16,
        seed=seed + 2,
        callback=stage_callback(progress, "stage 2 (target, unlabelled)"),
        replay=(source, {"y": source_y, "domain": SOURCE}),
        replay_fraction=params.replay_fraction,
        **common,
    )
    return model


def generate(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor | None,
    mode: str,
    params: GenerationParams,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """``num_per_image`` images per source image under ``(y, domain=target)``.

    Returns uint8 images and a provenance frame: ``source_index`` (row in ``images``), ``seed``,
    ``strength``, ``guidance``, ``generator`` (and ``class_guidance`` when it is set).
    ``maskmedpaint`` needs ``masks`` (True = ROI).
    """
    if mode not in MODES:
        raise ShortcutlabError(f"unknown generator '{mode}'; choose one of: {', '.join(MODES)}")
    if mode == "maskmedpaint" and masks is None:
        raise ShortcutlabError("maskmedpaint needs ROI masks; this dataset has none.")
    if params.num_per_image < 1:
        raise ShortcutlabError("num_per_image must be at least 1.")
    n, k = len(images), params.num_per_image
    strengths = _cycle(params.strength, k)
    guidances = _cycle(params.guidance, k)
    if mode == "img2img":
        strengths = [0.5] * k
    rows = pd.DataFrame(
        {
            "source_index": np.repeat(np.arange(n), k),
            "copy": np.tile(np.arange(k), n),
        }
    )
    rows["seed"] = params.seed * 1_000_003 + rows["source_index"] * k + rows["copy"]
    rows["strength"] = [1.0 if mode == "text2img" else strengths[c] for c in rows["copy"]]
    rows["guidance"] = [guidances[c] for c in rows["copy"]]
    if params.class_guidance is not None:
        rows["class_guidance"] = float(params.class_guidance)
    rows["generator"] = mode
    out = torch.empty((len(rows), *images.shape[1:]), dtype=torch.uint8)
    # Batch rows that share (strength, guidance) so one sampler call serves them.
    done = 0
    for (s, g), part in rows.groupby(["strength", "guidance"], sort=False):
        index = part.index.to_numpy()
        scale: Guidance = float(g)
        if params.class_guidance is not None:
            scale = {"y": float(params.class_guidance), "domain": float(g)}
        for start in range(0, len(index), params.batch_size):
            chunk = index[start : start + params.batch_size]
            src = torch.as_tensor(rows["source_index"].to_numpy()[chunk])
            cond = {"y": y[src], "domain": TARGET}
            seeds = rows["seed"].to_numpy()[chunk].tolist()
            if mode == "text2img":
                gen = sample(model, cond, len(chunk), params.steps, scale, seeds)
            else:
                roi = (
                    masks[src].to(torch.bool)
                    if mode == "maskmedpaint"
                    else torch.zeros(len(chunk), *images.shape[2:], dtype=torch.bool)
                )
                gen = inpaint(
                    model,
                    images[src],
                    roi,
                    cond,
                    params.steps,
                    float(s),
                    scale,
                    params.resample,
                    seeds,
                )
            out[torch.tensor(chunk)] = gen
            done += len(chunk)
            if progress is not None:
                progress(f"generate ({mode})", done, len(rows))
    return out, rows.drop(columns="copy")


def _cycle(values: float | Sequence[float], k: int) -> list[float]:
    values = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    if not values:
        raise ShortcutlabError("strength and guidance need at least one value.")
    return [values[i % len(values)] for i in range(k)]


def grounding_roi(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    y: torch.Tensor,
    params: GroundingParams | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """ROI masks (N, H, W) where the data has none: Otsu's foreground of the ``y`` token's
    grounding map (``generative/grounding.py``) under each image's own class and the source
    domain, the condition the model learnt these images under in stage 1."""
    from shortcutlab.generative.grounding import ground

    result = ground(model, images, {"y": y, "domain": SOURCE}, "y", params, progress)
    return torch.from_numpy(result.mask)


# ---------------------------------------------------------------------------------------------
# the generated set as a CSV dataset
# ---------------------------------------------------------------------------------------------
def write_generated(
    out_dir: str | Path,
    images: torch.Tensor,
    meta: pd.DataFrame,
    masks: torch.Tensor | None = None,
) -> Path:
    """Write PNGs and ``metadata.csv`` (``path``, ``y``, attributes, ``mask``, provenance)."""
    from PIL import Image

    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    meta = meta.reset_index(drop=True).copy()
    paths, mask_paths = [], []
    for i, img in enumerate(images.numpy()):
        rel = f"images/{i:06d}.png"
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(arr).save(root / rel)
        paths.append(rel)
        if masks is not None:
            mrel = f"images/{i:06d}_mask.png"
            Image.fromarray(masks[i].numpy().astype(np.uint8) * 255).save(root / mrel)
            mask_paths.append(mrel)
    meta.insert(0, "path", paths)
    if masks is not None:
        meta["mask"] = mask_paths
    if "split" not in meta.columns:
        meta["split"] = "train"
    tmp = root / "metadata.csv.tmp"
    meta.to_csv(tmp, index=False)
    tmp.replace(root / "metadata.csv")
    return root / "metadata.csv"


def load_generated(directory: str | Path, attributes: Sequence[str] = ()) -> ImageTable:
    """Read a set written by ``write_generated`` back into an ``ImageTable``."""
    from PIL import Image

    root = Path(directory)
    csv = root / "metadata.csv"
    if not csv.is_file():
        raise ShortcutlabError(f"{root} has no metadata.csv; generate the set first.")
    meta = pd.read_csv(csv)
    missing = [c for c in ("path", "y", *attributes) if c not in meta.columns]
    if missing:
        raise ShortcutlabError(f"{csv} lacks the column(s) {', '.join(missing)}.")
    images = []
    for rel in meta["path"]:
        arr = np.asarray(Image.open(root / rel))
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    masks = None
    if "mask" in meta.columns:
        masks = np.stack([np.asarray(Image.open(root / rel)) > 0 for rel in meta["mask"]])
    num_classes = int(meta["y"].max()) + 1
    return ImageTable(np.stack(images), meta, list(attributes), num_classes, masks, root.name)


# ---------------------------------------------------------------------------------------------
# one call: split source/target, fit (or reuse) the model, generate (or reuse) the set
# ---------------------------------------------------------------------------------------------
def cache_key(*parts) -> str:
    """A short stable key of tensors and JSON-able parts."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            h.update(part.contiguous().numpy().tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def split_domains(
    domain_values: np.ndarray, target: int, n_target: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Source rows (domain != target) and ``n_target`` seeded target rows (domain == target)."""
    is_target = np.asarray(domain_values) == target
    source, pool = np.flatnonzero(~is_target), np.flatnonzero(is_target)
    if len(source) == 0 or len(pool) == 0:
        raise ShortcutlabError(
            f"the training images need both target rows (domain == {target}) and source rows"
        )
    rng = np.random.default_rng(seed)
    return source, np.sort(rng.permutation(pool)[:n_target])


def build_generated_set(
    images: torch.Tensor,
    meta: pd.DataFrame,
    masks: torch.Tensor | None,
    attributes: Sequence[str],
    domain: str,
    target: int,
    mode: str,
    diffusion: DiffusionParams,
    generation: GenerationParams,
    out_dir: str | Path,
    model_dir: str | Path,
    num_classes: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    roi: str = "data",
) -> ImageTable:
    """The whole recipe on training rows (``images``, ``meta`` with ``y`` and ``attributes``).

    Reuses ``model_dir`` if it holds a saved model and ``out_dir`` if it holds a finished set.
    The written set has ``path``, ``y``, the attributes (``domain`` set to ``target``, the
    others copied from the source image), ``mask`` (the ROI kept: the data's ``masks``, or with
    ``roi="grounding"`` the grounded one, ``grounding_roi``), ``source_image`` (the source's
    ``path`` or row number), ``source_row``, ``seed``, ``strength``, ``guidance``, ``generator``
    (and ``roi`` for maskmedpaint).
    """
    if roi not in ROI_SOURCES:
        raise ShortcutlabError(f"roi must be one of {', '.join(ROI_SOURCES)}, not '{roi}'")
    grounded = mode == "maskmedpaint" and roi == "grounding"
    if mode == "maskmedpaint" and masks is None and not grounded:
        raise ShortcutlabError(
            "maskmedpaint needs ROI masks and this dataset has none; set dataset.roi: grounding "
            "to ground them with the diffusion model"
        )
    out_dir, model_dir = Path(out_dir), Path(model_dir)
    if (out_dir / "metadata.csv").is_file():
        return load_generated(out_dir, attributes)
    if domain not in meta.columns:
        raise ShortcutlabError(f"the domain attribute '{domain}' is not a column of the data")
    meta = meta.reset_index(drop=True)
    source, target_rows = split_domains(meta[domain].to_numpy(), target, diffusion.n_target, seed)
    y = torch.tensor(meta["y"].to_numpy(), dtype=torch.long)
    num_classes = num_classes or int(y.max()) + 1
    src = torch.as_tensor(source)
    if (model_dir / "shortcutlab_diffusion.json").is_file():
        model = ConditionalDiffusion.load(model_dir)
    else:
        model = fit_generator(
            images[src],
            y[src],
            images[torch.as_tensor(target_rows)],
            num_classes,
            diffusion,
            seed,
            progress,
        )
        model.save(model_dir)
    if grounded:
        src_masks = grounding_roi(model, images[src], y[src], progress=progress)
    else:
        src_masks = None if masks is None else torch.as_tensor(masks)[src]
    generated, prov = generate(model, images[src], y[src], src_masks, mode, generation, progress)
    rows = source[prov["source_index"].to_numpy()]
    out = meta.iloc[rows][["y", *attributes]].reset_index(drop=True)
    out[domain] = target
    names = (
        meta["path"].astype(str) if "path" in meta.columns else pd.Series(meta.index.astype(str))
    )
    out["source_image"] = names.to_numpy()[rows]
    out["source_row"] = rows
    for col in ("seed", "strength", "guidance", "class_guidance", "generator"):
        if col in prov.columns:
            out[col] = prov[col].to_numpy()
    if mode == "maskmedpaint":
        out["roi"] = roi
    index = torch.as_tensor(prov["source_index"].to_numpy().copy())
    out_masks = None if src_masks is None else src_masks[index]
    write_generated(out_dir, generated, out, out_masks)
    return load_generated(out_dir, attributes)
