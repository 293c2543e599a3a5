"""The settings of MaskMedPaint and its baselines: how the diffusion model is trained and how
images are generated.

These dataclasses hold the one copy of every default: the ``maskmedpaint``, ``text2img`` and
``img2img`` methods build their registry defaults (``GENERATIVE_HPARAMS``) from them. The module
imports nothing heavy, so reading the defaults does not load diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# one batch size for diffusion training and sampling (the methods' ``diffusion_batch_size``)
BATCH_SIZE = 32


@dataclass
class DiffusionParams:
    """How the diffusion model is trained (the part shared by all three generators)."""

    latent: bool = True
    autoencoder_steps: int = 300
    stage1_steps: int = 2000
    stage2_steps: int = 500
    n_target: int = 100
    batch_size: int = BATCH_SIZE
    lr: float = 1e-3
    cond_dropout: float = 0.1
    replay_fraction: float = 0.5
    bf16: bool = False
    pretrained: str = ""  # a local SD-format or saved model directory to fine-tune
    unet_channels: tuple[int, ...] = (32, 64, 64)
    vae_channels: tuple[int, ...] = (16, 32, 64)


@dataclass
class GenerationParams:
    """How images are generated; lists are cycled over the copies of each source image."""

    num_per_image: int = 5
    strength: list[float] = field(default_factory=lambda: [1.0])
    guidance: list[float] = field(default_factory=lambda: [3.0])
    # None: one guidance scale for the joint (y, target) condition (classifier-free guidance).
    # A number: composable guidance, ``guidance`` scales the target token and this the class.
    class_guidance: float | None = None
    steps: int = 50
    resample: int = 1
    batch_size: int = BATCH_SIZE
    seed: int = 0


@dataclass
class LatentDriftParams:
    """How the Latent Drifting generator is fitted and used (docs/methods.md section 7).

    The model is conditioned on ``y`` and every attribute of the data, one token each, so any of
    them can be flipped. ``train_delta`` shifts the forward noise during fitting
    (``drift_target``: the network regresses the shifted or the plain noise); the sampling
    ``delta`` is chosen afterwards by grid search on the training images.
    """

    latent: bool = True
    autoencoder_steps: int = 300
    steps: int = 1500
    batch_size: int = BATCH_SIZE
    lr: float = 1e-3
    cond_dropout: float = 0.1
    train_delta: float = 0.1
    drift_target: str = "plain"  # measured: FID 26.6 against 26.8 for "shifted" (RESULTS.md)
    bf16: bool = False
    pretrained: str = ""  # a local SD-format or saved model directory to fine-tune
    unet_channels: tuple[int, ...] = (32, 64, 64)
    vae_channels: tuple[int, ...] = (16, 32, 64)
    # sampling and the delta search
    sample_steps: int = 25
    guidance: float = 2.0
    delta_grid: tuple[float, ...] = (-0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2)
    search_samples: int = 128
