"""Generative core: a label-conditioned diffusion model, its training and sampler loops.

Used by MaskMedPaint (inpainting), Latent Drifting (sampling/inversion with a shifted start) and
diffusion cross-attention grounding (one token per condition field).
"""

from shortcutlab.generative.attention import CrossAttentionRecorder
from shortcutlab.generative.conditioning import LabelConditioner
from shortcutlab.generative.model import ConditionalDiffusion
from shortcutlab.generative.sampling import inpaint, invert, latent_known_mask, sample
from shortcutlab.generative.training import denoising_loss, train_autoencoder, train_diffusion

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
