"""``counterfactual-aug``: train on real images plus their counterfactuals with the spurious
attribute(s) flipped (Latent Drifting generator, docs/methods.md section 7).

Before training, a diffusion model conditioned on ``(y, attributes...)`` is fitted with the drift
``train_delta`` to the *training* split only (never val/inv/bal), the sampling ``delta`` is chosen
by grid search on the same training images, and every training image gets one counterfactual per
attribute in ``flip`` (default: all of the data's attributes) with that attribute flipped and the
label kept. The classifier then trains with ERM on real + counterfactual images, in which the
flipped attribute no longer predicts ``y``. The fitted generator is cached by content
(``cache`` or ``$SHORTCUTLAB_CACHE/generated``) and shared with ``shortcutlab counterfactual``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.params import LatentDriftParams
from shortcutlab.methods.base import Hparam, RunContext
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register

_LD = LatentDriftParams()
STATE_FILE = "latent_drift.json"

DRIFT_HPARAMS: dict[str, Hparam] = {
    "flip": Hparam("", "comma-separated attributes to flip ('' = every attribute of the data)"),
    "delta": Hparam("auto", "sampling drift: 'auto' (grid search on train) or a number in [-1, 1]"),
    "train_delta": Hparam(_LD.train_delta, "drift of the forward noise while fitting"),
    "drift_target": Hparam(
        _LD.drift_target,
        "what the network regresses under drift: the shifted or the plain noise",
        choices=("shifted", "plain"),
    ),
    "autoencoder_steps": Hparam(_LD.autoencoder_steps, "autoencoder training steps (latent)"),
    "diffusion_steps": Hparam(_LD.steps, "diffusion fine-tuning steps on the training images"),
    "diffusion_batch_size": Hparam(_LD.batch_size, "diffusion training and sampling batch size"),
    "diffusion_lr": Hparam(_LD.lr, "diffusion AdamW learning rate"),
    "latent": Hparam(_LD.latent, "latent or pixel-space diffusion"),
    "unet_channels": Hparam(
        [float(c) for c in _LD.unet_channels], "UNet block widths", type=list[float]
    ),
    "vae_channels": Hparam(
        [float(c) for c in _LD.vae_channels],
        "autoencoder block widths (n widths: latent = image / 2^(n-1))",
        type=list[float],
    ),
    "pretrained": Hparam(_LD.pretrained, "local SD-format or saved model directory to fine-tune"),
    "sample_steps": Hparam(_LD.sample_steps, "DDIM steps of inversion and regeneration"),
    "guidance": Hparam(_LD.guidance, "classifier-free guidance scale of the regeneration"),
    "search_samples": Hparam(_LD.search_samples, "samples per delta in the grid search"),
    "cache": Hparam("", "folder for the cached generator", nullable=True),
}


def drift_params(hp: dict[str, Any]) -> LatentDriftParams:
    """The generator settings that the hyperparameters ``hp`` name."""
    return LatentDriftParams(
        latent=bool(hp["latent"]),
        autoencoder_steps=int(hp["autoencoder_steps"]),
        steps=int(hp["diffusion_steps"]),
        batch_size=int(hp["diffusion_batch_size"]),
        lr=float(hp["diffusion_lr"]),
        train_delta=float(hp["train_delta"]),
        drift_target=str(hp["drift_target"]),
        pretrained=str(hp["pretrained"]),
        unet_channels=tuple(int(c) for c in hp["unet_channels"]),
        vae_channels=tuple(int(c) for c in hp["vae_channels"]),
        sample_steps=int(hp["sample_steps"]),
        guidance=float(hp["guidance"]),
        search_samples=int(hp["search_samples"]),
    )


def parse_delta(value: Any) -> float | None:
    """``'auto'`` -> None (grid search), else a number in [-1, 1]; one sentence otherwise."""
    from shortcutlab.generative.latent_drift import check_delta

    if value is None or str(value).strip().lower() == "auto":
        return None
    return check_delta(value)


def drift_generator(
    x: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    attributes: list[str],
    num_classes: int,
    cardinalities: list[int],
    params: LatentDriftParams,
    seed: int,
    cache: Path,
    model_dir: Path | None = None,
    progress=None,
):
    """The fitted generator of these training tensors and its state (``delta`` chosen on them,
    the search curve), from ``model_dir`` (default: a content-keyed folder under ``cache``)
    when it holds one. A ``model_dir`` fitted on other data is refused."""
    from shortcutlab.generative.latent_drift import fit_drift_generator, search_delta
    from shortcutlab.generative.maskmedpaint import cache_key
    from shortcutlab.generative.model import META_FILE, ConditionalDiffusion

    data_key = cache_key(x, y, z, attributes)
    model_key = cache_key(data_key, asdict(params), seed)
    model_dir = Path(model_dir) if model_dir is not None else cache / f"latent-drift-{model_key}"
    fields = {"y": int(num_classes), **dict(zip(attributes, map(int, cardinalities), strict=True))}
    cond = {"y": y, **{a: z[:, j] for j, a in enumerate(attributes)}}
    state_path = model_dir / STATE_FILE
    if state_path.is_file() and (model_dir / META_FILE).is_file():
        state = json.loads(state_path.read_text())
        if state.get("data_key") != data_key:
            raise ShortcutlabError(
                f"the generator in {model_dir} was fitted on other data; give another model "
                "folder or delete it"
            )
        return ConditionalDiffusion.load(model_dir), state
    import time

    start = time.perf_counter()
    model = fit_drift_generator(x, cond, fields, params, seed, progress)
    fit_s = time.perf_counter() - start
    best, curve = search_delta(
        model,
        x,
        cond,
        params.delta_grid,
        params.search_samples,
        params.sample_steps,
        params.guidance,
        seed,
        progress=progress,
    )
    state = {
        "data_key": data_key,
        "params": asdict(params),
        "seed": seed,
        "fields": fields,
        "delta": best,
        "delta_curve": curve,
        "fit_seconds": fit_s,
        "search_seconds": time.perf_counter() - start - fit_s,
    }
    model.save(model_dir)
    state_path.write_text(json.dumps(state, indent=1))
    return model, state


def flip_list(hp: dict[str, Any], attributes: list[str]) -> list[str]:
    names = [s.strip() for s in str(hp["flip"]).split(",") if s.strip()] or list(attributes)
    unknown = [n for n in names if n not in attributes]
    if unknown:
        raise ShortcutlabError(
            f"counterfactual-aug cannot flip {', '.join(unknown)}: not among dataset.attributes "
            f"({', '.join(attributes) or 'none'})"
        )
    return names


def generator_for(train, info, params, seed, cache, model_dir=None, progress=None):
    """``drift_generator`` of a split's tensors (``x``, ``y``, ``z``) and the run's ``TaskInfo``:
    the one call the command, the method and the benchmarks share."""
    return drift_generator(
        train["x"],
        train["y"],
        train["z"],
        info.attributes,
        info.num_classes,
        info.attribute_cardinalities,
        params,
        seed,
        Path(cache),
        None if model_dir is None else Path(model_dir),
        progress,
    )


@register
class CounterfactualAug(ERM):
    name = "counterfactual-aug"
    summary = "train on real images + their counterfactuals with the spurious attributes flipped"
    HPARAMS: ClassVar[dict[str, Hparam]] = DRIFT_HPARAMS

    def training_data(self, context: RunContext) -> dict[str, torch.Tensor]:
        """The real training rows followed by one counterfactual per row and flipped attribute."""
        from shortcutlab.data.sources import cache_dir
        from shortcutlab.generative.counterfactuals import counterfactuals, flipped_values
        from shortcutlab.methods.maskmedpaint import concat_rows

        hp, info, train = self.hparams, self.info, context.train
        names = flip_list(hp, info.attributes)
        delta_hp = parse_delta(hp["delta"])
        params = drift_params(hp)
        cache = Path(hp["cache"] or cache_dir() / "generated")
        progress = getattr(context, "progress", None)
        model, state = generator_for(train, info, params, context.seed, cache, None, progress)
        delta = state["delta"] if delta_hp is None else delta_hp
        cond = {"y": train["y"], **{a: train["z"][:, j] for j, a in enumerate(info.attributes)}}
        xs, ys, zs = [], [], []
        for name in names:
            j = info.attributes.index(name)
            new = flipped_values(
                train["z"][:, j].numpy(), name, info.attribute_cardinalities[j], None
            )
            xs.append(
                counterfactuals(
                    model,
                    train["x"],
                    cond,
                    name,
                    new,
                    params.sample_steps,
                    params.guidance,
                    delta,
                    batch_size=params.batch_size,
                    progress=progress,
                    label=f"counterfactuals ({name} flipped)",
                )
            )
            z = train["z"].clone()
            z[:, j] = torch.as_tensor(new)
            ys.append(train["y"])
            zs.append(z)
        new_rows = {"x": torch.cat(xs), "y": torch.cat(ys), "z": torch.cat(zs)}
        if "mask" in train:
            new_rows["mask"] = torch.cat([train["mask"]] * len(names))
        report = {"delta": delta, "flipped": names, "n_generated": int(len(new_rows["y"]))}
        context.layout.file("generated.json").write_text(json.dumps(report, indent=1))
        return concat_rows(train, new_rows, info)
