"""Training-time augmentation with MONAI transforms (``train.augment``).

``train.augment`` is ``none`` (the default), ``light``, ``standard`` or a mapping of transform
names to their parameters (``{flip: {prob: 0.5}, rotate: {degrees: 5}}``; ``{}`` takes the
defaults). The transforms, in this order:

- ``crop``: a random crop whose sides are ``scale``..1 of the image, resized back
  (``RandSpatialCrop`` + ``Resize``; a random resized crop);
- ``flip``: a left-right flip with probability ``prob`` (``RandFlip``; ``axis: 0`` flips
  up-down);
- ``rotate``: a rotation by up to ``degrees`` either way with probability ``prob``
  (``RandRotate``, border padding);
- ``intensity``: intensities scaled by 1 + u, |u| <= ``factor`` (``RandScaleIntensity``);
- ``contrast``: a gamma in 1 +- ``gamma`` (``RandAdjustContrast``).

They apply to training batches only (``Context.fit``), never to val/inv/bal or evaluation, on
float images in [0, 1] (clipped back to it), one image at a time. Each batch's random state
comes from the run seed, the epoch and the batch number, so a run is reproducible and gives the
same batches with any ``train.num_workers``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

TRANSFORMS: dict[str, dict[str, float]] = {
    "crop": {"scale": 0.8},
    "flip": {"prob": 0.5, "axis": 1},
    "rotate": {"degrees": 10.0, "prob": 0.5},
    "intensity": {"factor": 0.1, "prob": 0.5},
    "contrast": {"gamma": 0.2, "prob": 0.5},
}
PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "none": {},
    "light": {"flip": {}, "intensity": {}},
    "standard": {"crop": {}, "flip": {}, "rotate": {}, "intensity": {}, "contrast": {}},
}


def augment_spec(value: str | dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """``train.augment`` as ``{transform: parameters}`` with the defaults filled in (empty: no
    augmentation); a ``ValueError`` names an unknown preset, transform or parameter."""
    if value is None:
        return {}
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(
                f"unknown augment preset '{value}'; choose one of: {', '.join(PRESETS)}, or a "
                f"mapping of transforms ({', '.join(TRANSFORMS)}) to parameters"
            )
        value = PRESETS[value]
    spec = {}
    for name, params in value.items():
        if name not in TRANSFORMS:
            raise ValueError(
                f"unknown augment transform '{name}'; choose from: {', '.join(TRANSFORMS)}"
            )
        params = dict(params or {})
        for key in params:
            if key not in TRANSFORMS[name]:
                raise ValueError(
                    f"augment transform '{name}' has no parameter '{key}'; it takes: "
                    f"{', '.join(TRANSFORMS[name])}"
                )
        spec[name] = {**TRANSFORMS[name], **{k: float(v) for k, v in params.items()}}
    return {name: spec[name] for name in TRANSFORMS if name in spec}  # the fixed order


def build_transform(spec: dict[str, dict[str, float]], image_size: int):
    """The MONAI ``Compose`` of ``spec`` (``augment_spec``) for (C, H, W) images; None if empty."""
    if not spec:
        return None
    from monai import transforms as mt

    steps = []
    if "crop" in spec:
        side = max(1, int(round(spec["crop"]["scale"] * image_size)))
        steps += [
            mt.RandSpatialCrop((side, side), max_roi_size=image_size, random_size=True),
            mt.Resize((image_size, image_size), mode="bilinear"),
        ]
    if "flip" in spec:
        steps.append(mt.RandFlip(prob=spec["flip"]["prob"], spatial_axis=int(spec["flip"]["axis"])))
    if "rotate" in spec:
        angle = math.radians(spec["rotate"]["degrees"])
        steps.append(mt.RandRotate(range_x=angle, prob=spec["rotate"]["prob"], keep_size=True))
    if "intensity" in spec:
        p = spec["intensity"]
        steps.append(mt.RandScaleIntensity(factors=p["factor"], prob=p["prob"]))
    if "contrast" in spec:
        p = spec["contrast"]
        steps.append(mt.RandAdjustContrast(prob=p["prob"], gamma=(1 - p["gamma"], 1 + p["gamma"])))
    return mt.Compose(steps)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """The random state of one training batch's augmentation (independent of the workers)."""
    return int(np.random.SeedSequence([seed, 7, epoch, batch]).generate_state(1)[0])


def augment_batch(transform, x: torch.Tensor, seed: int) -> torch.Tensor:
    """A batch of uint8 images (B, C, H, W) as float in [0, 1], each image transformed."""
    from monai.data import get_track_meta, set_track_meta

    transform.set_random_state(seed=seed)
    x = x.float().div_(255.0)
    tracking, threads = get_track_meta(), torch.get_num_threads()
    set_track_meta(False)  # plain tensors out: no per-image metadata to build
    # one thread: these are small per-image ops, which several threads slow down ~10x (on
    # 2 busy cores); in a worker it is already 1, in the training process it is restored
    torch.set_num_threads(1)
    try:
        out = torch.stack([torch.as_tensor(transform(img)) for img in x])
    finally:
        set_track_meta(tracking)
        torch.set_num_threads(threads)
    return out.float().clamp_(0.0, 1.0)
