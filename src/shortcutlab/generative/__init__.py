"""Generative core: a label-conditioned diffusion model, its training and sampler loops.

Used by MaskMedPaint (inpainting), Latent Drifting (sampling/inversion with a shifted start) and
diffusion cross-attention grounding (one token per condition field).

The names below are imported on first use, so that a light submodule (``generative.params``,
whose defaults every method registry reads) does not load diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shortcutlab.generative.attention import CrossAttentionRecorder
    from shortcutlab.generative.conditioning import LabelConditioner
    from shortcutlab.generative.model import ConditionalDiffusion
    from shortcutlab.generative.sampling import inpaint, invert, latent_known_mask, sample
    from shortcutlab.generative.training import (
        denoising_loss,
        train_autoencoder,
        train_diffusion,
    )

_SOURCES = {
    "CrossAttentionRecorder": "attention",
    "LabelConditioner": "conditioning",
    "ConditionalDiffusion": "model",
    "denoising_loss": "training",
    "inpaint": "sampling",
    "invert": "sampling",
    "latent_known_mask": "sampling",
    "sample": "sampling",
    "train_autoencoder": "training",
    "train_diffusion": "training",
}

__all__ = [
    "ConditionalDiffusion",
    "CrossAttentionRecorder",
    "LabelConditioner",
    "denoising_loss",
    "inpaint",
    "invert",
    "latent_known_mask",
    "sample",
    "train_autoencoder",
    "train_diffusion",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})
