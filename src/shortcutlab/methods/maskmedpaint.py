"""MaskMedPaint (Jin, Gerych, Ghassemi, ML4H 2024) as a training method: real source + generated.

Before training, a label-conditioned diffusion model is fitted to the training split (stage 1 on
the labelled *source* rows, ``domain != target``; stage 2 on ``n_target`` unlabelled *target*
rows, ``domain == target``), then every source image gets ``num_per_image`` copies whose
background outside the ROI is inpainted under ``(y, target)``; the classifier trains on the
training split plus these copies (ERM). The model and the set are cached (``cache`` or
``$SHORTCUTLAB_CACHE/generated``) so seeds, methods and re-runs share them. The copies carry
the target value of the domain attribute and the source's other attributes (our choice: the
inpainting may also change other background attributes).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.params import DiffusionParams, GenerationParams
from shortcutlab.methods.base import Hparam, RunContext
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register

# The diffusion and generation defaults are those of ``generative.params`` (written once there);
# ``generation_params`` maps these names onto its fields.
_DIFFUSION, _GENERATION = DiffusionParams(), GenerationParams()

GENERATIVE_HPARAMS: dict[str, Hparam] = {
    "domain": Hparam(
        "site", "attribute whose values are the domains (must be in dataset.attributes)"
    ),
    "target": Hparam(1, "value of the domain attribute that is the target domain"),
    "n_target": Hparam(_DIFFUSION.n_target, "unlabelled target images for stage 2"),
    "num_per_image": Hparam(_GENERATION.num_per_image, "generated copies per source image"),
    "strength": Hparam(
        list(_GENERATION.strength),
        "inpainting strength(s), cycled over the copies",
        type=list[float],
    ),
    "guidance": Hparam(
        list(_GENERATION.guidance),
        "classifier-free guidance scale(s), cycled over the copies",
        type=list[float],
    ),
    "class_guidance": Hparam(
        _GENERATION.class_guidance,
        "null: guidance scales the joint (class, target) condition; a number: composable "
        "guidance, guidance scales the target token and this number the class",
        type=float,
        nullable=True,
    ),
    "sample_steps": Hparam(_GENERATION.steps, "DDIM steps"),
    "resample": Hparam(_GENERATION.resample, "RePaint resampling per step (1 = none)"),
    "autoencoder_steps": Hparam(
        _DIFFUSION.autoencoder_steps, "autoencoder training steps (latent model)"
    ),
    "stage1_steps": Hparam(_DIFFUSION.stage1_steps, "diffusion steps on labelled source images"),
    "stage2_steps": Hparam(_DIFFUSION.stage2_steps, "diffusion steps on unlabelled target images"),
    "diffusion_batch_size": Hparam(
        _DIFFUSION.batch_size, "diffusion training and sampling batch size"
    ),
    "diffusion_lr": Hparam(_DIFFUSION.lr, "diffusion AdamW learning rate"),
    "latent": Hparam(_DIFFUSION.latent, "latent (16x16x4 for 64x64) or pixel-space diffusion"),
    "pretrained": Hparam(
        _DIFFUSION.pretrained, "local SD-format or saved model directory to fine-tune"
    ),
    "cache": Hparam("", "folder for the cached model and generated sets", nullable=True),
    "domain_check": Hparam(True, "score generated backgrounds with a domain classifier"),
}


def generation_params(hp: dict[str, Any], seed: int) -> tuple[DiffusionParams, GenerationParams]:
    """The diffusion and generation settings that the hyperparameters ``hp`` name."""
    diffusion = DiffusionParams(
        latent=bool(hp["latent"]),
        autoencoder_steps=int(hp["autoencoder_steps"]),
        stage1_steps=int(hp["stage1_steps"]),
        stage2_steps=int(hp["stage2_steps"]),
        n_target=int(hp["n_target"]),
        batch_size=int(hp["diffusion_batch_size"]),
        lr=float(hp["diffusion_lr"]),
        pretrained=str(hp["pretrained"]),
    )
    strength = hp["strength"] if isinstance(hp["strength"], list) else [hp["strength"]]
    guidance = hp["guidance"] if isinstance(hp["guidance"], list) else [hp["guidance"]]
    generation = GenerationParams(
        num_per_image=int(hp["num_per_image"]),
        strength=[float(s) for s in strength],
        guidance=[float(g) for g in guidance],
        class_guidance=_optional_float(hp["class_guidance"], "class_guidance"),
        steps=int(hp["sample_steps"]),
        resample=int(hp["resample"]),
        batch_size=int(hp["diffusion_batch_size"]),
        seed=seed,
    )
    return diffusion, generation


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ShortcutlabError(f"{name} must be a number or null; got {value!r}") from None


def domain_column(info, hp: dict[str, Any]) -> int:
    if hp["domain"] not in info.attributes:
        raise ShortcutlabError(
            f"the domain attribute '{hp['domain']}' is not among dataset.attributes "
            f"({', '.join(info.attributes) or 'none'}); add it there"
        )
    return info.attributes.index(hp["domain"])


_SOURCE = -1  # domain value of the source rows when the domain is not an attribute column


def generation_pool(
    train: dict[str, torch.Tensor], unlabelled: dict[str, torch.Tensor] | None, info, hp
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The images the generator learns from and each one's domain value.

    Without ``unlabelled``, the training split itself, its domain read from the attribute column
    ``hp["domain"]`` (target rows in train). With it (a domain-shift dataset: train is all source,
    the split ``target_unlabelled`` all target), the training rows followed by the unlabelled
    target rows, whose labels are replaced by 0 so nothing downstream can use them.
    """
    if unlabelled is None:
        return train, train["z"][:, domain_column(info, hp)].clone()
    n_train, n_target = len(train["y"]), len(unlabelled["y"])
    if n_target == 0:
        raise ShortcutlabError("the split target_unlabelled is empty; the generator needs images")
    keys = ["x", "y", "z"] + (["mask"] if "mask" in train and "mask" in unlabelled else [])
    pool = {k: torch.cat([train[k], unlabelled[k].to(train[k].dtype)]) for k in keys}
    pool["y"][n_train:] = 0
    domain = torch.cat(
        [torch.full((n_train,), _SOURCE), torch.full((n_target,), int(hp["target"]))]
    )
    return pool, domain


def concat_rows(
    train: dict[str, torch.Tensor], new: dict[str, torch.Tensor], info
) -> dict[str, torch.Tensor]:
    """The training tensors with ``new`` rows after them (group ids and row indices added)."""
    new = dict(new)
    new["g"] = torch.as_tensor(info.grouper.ids(new["y"].numpy(), new["z"].numpy()))
    new["idx"] = torch.arange(len(train["y"]), len(train["y"]) + len(new["y"]))
    out = {}
    for key in train:
        if key not in new:
            raise ShortcutlabError(f"cannot append generated rows: no values for '{key}'")
        out[key] = torch.cat([train[key], new[key].to(train[key].dtype)])
    return out


@register
class MaskMedPaint(ERM):
    name = "maskmedpaint"
    summary = "train on real + diffusion-inpainted images: target-domain background, exact ROI"
    HPARAMS: ClassVar[dict[str, Hparam]] = GENERATIVE_HPARAMS
    generator: ClassVar[str] = "maskmedpaint"

    def training_data(self, context: RunContext) -> dict[str, torch.Tensor]:
        """The real training rows followed by the generated ones (made or read from cache)."""
        from shortcutlab.data.sources import cache_dir

        hp, info, train = self.hparams, self.info, context.train
        unlabelled = context.unlabelled
        pool, domain = generation_pool(train, unlabelled, info, hp)
        cache = Path(hp["cache"] or cache_dir() / "generated")
        set_dir, model_dir = cache_dirs(
            pool, hp, self.generator, context.seed, cache, domain, info.roi
        )
        table = generate_for_training(
            pool,
            info,
            hp,
            self.generator,
            context.seed,
            cache,
            progress=getattr(context, "progress", None),
            out_dir=set_dir,
            model_dir=model_dir,
            domain_values=domain,
        )
        rows = torch.tensor(table.meta["source_row"].to_numpy())  # source rows: all in train
        z = train["z"][rows].clone()
        if unlabelled is None:
            z[:, domain_column(info, hp)] = int(hp["target"])
        new = {"x": torch.from_numpy(table.images), "y": train["y"][rows], "z": z}
        if "mask" in train:
            new["mask"] = train["mask"][rows]
        self._save_grid(train, table, context)
        if hp["domain_check"]:
            kept = None if table.masks is None else torch.from_numpy(table.masks)  # ROI kept
            self._check_domain(pool, domain, new["x"], kept, context, model_dir)
        return concat_rows(train, new, info)

    def _save_grid(self, train, table, context: RunContext, n: int = 8) -> None:
        """``figures/generated_<method>_seed<S>.png`` of the experiment (report): source, ROI
        mask (the one kept, ``table.masks``, where the set has one), generated copies for ``n``
        source images, alternating classes."""
        save_generated_grid(
            train["x"].numpy(),
            None if "mask" not in train else train["mask"].numpy(),
            train["y"].numpy(),
            table,
            context.layout.figure("generated"),
            f"{self.generator}: source, ROI, generated (target domain)",
            n,
        )

    def _check_domain(
        self, pool, domain, generated, kept, context: RunContext, model_dir: Path
    ) -> None:
        """Write ``generated.json``: how many images, and how target-like the backgrounds of the
        ``generated`` images outside their ``kept`` ROI (None: whole images) are.

        The domain classifier sees the real images through the generator's autoencoder (see
        ``generative.domain_check``), so it judges the domain and not the decoder's rendering.
        """
        import json

        from shortcutlab.generative.domain_check import domain_target_rate
        from shortcutlab.generative.model import META_FILE, ConditionalDiffusion

        saved = (model_dir / META_FILE).is_file()  # gone if the user pruned the cache
        model = ConditionalDiffusion.load(model_dir) if saved else None
        render = model.reconstruct if model is not None and model.vae is not None else None
        score = domain_target_rate(
            pool["x"],
            domain,
            pool.get("mask"),
            generated,
            kept,
            int(self.hparams["target"]),
            seed=context.seed,
            render=render,
        )
        report = {
            "generator": self.generator,
            "n_generated": len(generated),
            "rendered": render is not None,
            **score,
        }
        context.layout.file("generated.json").write_text(json.dumps(report, indent=1))


def save_generated_grid(images, masks, y, table, path: Path, title: str, n: int = 8) -> Path:
    """A source / mask / generated grid of a generated set (rows: ``source_row`` of ``table``,
    indexing ``images``), ``n`` source images taken round-robin over the classes. The mask is
    the one the set kept (``table.masks``), else ``masks``."""
    import numpy as np
    import pandas as pd

    from shortcutlab.plotting import generated_grid

    rows = table.meta["source_row"].to_numpy()
    firsts = pd.unique(rows)  # in order of first appearance
    by_class = [[r for r in firsts if y[r] == c] for c in np.unique(y[firsts])]
    picked = [
        lst[i]
        for i in range(max(map(len, by_class), default=0))
        for lst in by_class
        if i < len(lst)
    ][:n]
    if table.masks is not None:  # the ROI the generator kept: the data's, or grounded
        first = {r: i for i, r in reversed(list(enumerate(rows)))}
        roi = np.stack([table.masks[first[r]] for r in picked]) if picked else None
    else:
        roi = None if masks is None else masks[picked]
    png = generated_grid(
        images[picked],
        roi,
        [table.images[rows == r] for r in picked],
        [f"row {r}, y={int(y[r])}" for r in picked],
        title,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def cache_dirs(
    train: dict[str, torch.Tensor],
    hp: dict[str, Any],
    generator: str,
    seed: int,
    cache: Path,
    domain_values: torch.Tensor,
    roi: str = "data",
) -> tuple[Path, Path]:
    """Where the generated set and the diffusion model for these inputs are cached.

    The model key covers the images, labels, attributes and diffusion settings, so
    maskmedpaint, text2img and img2img of one run share one trained diffusion model; the set
    key adds the generator, its settings and (for maskmedpaint) a grounded ROI.
    """
    from shortcutlab.generative.maskmedpaint import cache_key

    diffusion, generation = generation_params(hp, seed)
    data_key = cache_key(
        train["x"], train["y"], train["z"], domain_values, [hp["domain"], hp["target"]]
    )
    model_key = cache_key(data_key, asdict(diffusion), seed)
    grounded = ["roi", roi] if generator == "maskmedpaint" and roi != "data" else []
    set_key = cache_key(model_key, generator, asdict(generation), *grounded)
    return cache / f"{generator}-{set_key}", cache / f"model-{model_key}"


def generate_for_training(
    train: dict[str, torch.Tensor],
    info,
    hp: dict[str, Any],
    generator: str,
    seed: int,
    cache: Path,
    progress=None,
    out_dir: Path | None = None,
    model_dir: Path | None = None,
    source_names=None,
    domain_values: torch.Tensor | None = None,
):
    """The generated set for these training tensors, from ``cache`` when it was made before
    (see ``cache_dirs``; ``out_dir`` / ``model_dir`` override its folders)."""
    import pandas as pd

    from shortcutlab.generative.maskmedpaint import build_generated_set

    if domain_values is None:
        domain_values = train["z"][:, domain_column(info, hp)]
    roi = info.roi
    diffusion, generation = generation_params(hp, seed)
    meta = pd.DataFrame(train["z"].numpy(), columns=info.attributes).assign(y=train["y"].numpy())
    meta[hp["domain"]] = domain_values.numpy()
    if source_names is not None:  # provenance: the source image's path (or row) in the dataset
        meta["path"] = list(source_names)
    if out_dir is None or model_dir is None:
        set_dir, cached_model = cache_dirs(train, hp, generator, seed, cache, domain_values, roi)
        out_dir, model_dir = out_dir or set_dir, model_dir or cached_model
    return build_generated_set(
        train["x"],
        meta,
        train.get("mask"),
        info.attributes,
        hp["domain"],
        int(hp["target"]),
        generator,
        diffusion,
        generation,
        out_dir,
        model_dir,
        info.num_classes,
        seed,
        progress,
        roi,
    )
