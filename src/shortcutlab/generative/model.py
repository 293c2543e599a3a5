"""A label-conditioned diffusion model: ``UNet2DConditionModel`` + optional ``AutoencoderKL``.

One class serves both scales. On a CPU, ``ConditionalDiffusion.create`` builds a small model for
the dataset at hand (latent 16x16x4 from a tiny KL autoencoder for 64x64 images, see
docs/generative.md for the measurements behind that choice; pixel space with ``latent=False``).
With a GPU, ``ConditionalDiffusion.from_pretrained`` loads a local Stable-Diffusion-format
directory (``unet/``, ``vae/``, ``scheduler/``; Rombach et al. 2022) and the same training and
sampling code fine-tunes and inpaints with it. Text prompts would need ``transformers`` (CLIP);
instead a ``LabelConditioner`` supplies one learned token per condition field.

Saved layout (``save(dir)``): ``unet/``, ``vae/`` (if latent), ``scheduler/`` and
``conditioner/``, each a diffusers config json + safetensors weights, plus
``shortcutlab_diffusion.json`` with the image geometry.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.conditioning import Condition, LabelConditioner

Guidance = float | dict[str, float]  # one CFG scale, or a scale per condition field

META_FILE = "shortcutlab_diffusion.json"


class ConditionalDiffusion(nn.Module):
    """Models + noise schedule; the loops live in ``training.py`` and ``sampling.py``."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        conditioner: LabelConditioner,
        scheduler: DDPMScheduler,
        vae: AutoencoderKL | None,
        image_size: int,
        in_channels: int,
    ):
        super().__init__()
        if unet.config.cross_attention_dim != conditioner.config.dim:
            raise ShortcutlabError(
                "The conditioner's token size must equal the UNet's cross_attention_dim."
            )
        self.unet, self.conditioner, self.vae = unet, conditioner, vae
        self.scheduler = scheduler
        self.image_size, self.in_channels = int(image_size), int(in_channels)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        image_size: int,
        in_channels: int,
        condition_fields: dict[str, int],
        latent: bool = True,
        unet_channels: tuple[int, ...] = (32, 64, 64),
        vae_channels: tuple[int, ...] = (16, 32, 64),
        latent_channels: int = 4,
        token_dim: int = 64,
        num_train_timesteps: int = 1000,
        sink_token: bool = False,
    ) -> ConditionalDiffusion:
        """A small model from scratch; cross-attention only at the two coarsest UNet levels;
        ``sink_token``: a learned token before the fields' (``LabelConditioner``)."""
        vae = None
        size, channels = image_size, in_channels
        if latent:
            groups = min(8, *vae_channels)
            vae = AutoencoderKL(
                in_channels=in_channels,
                out_channels=in_channels,
                down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
                up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
                block_out_channels=tuple(vae_channels),
                latent_channels=latent_channels,
                layers_per_block=1,
                norm_num_groups=groups,
                sample_size=image_size,
                mid_block_add_attention=False,
                scaling_factor=1.0,
            )
            factor = 2 ** (len(vae_channels) - 1)
            if image_size % factor:
                raise ShortcutlabError(
                    f"Image size must be a multiple of {factor} for the autoencoder."
                )
            size, channels = image_size // factor, latent_channels
        n = len(unet_channels)
        down = ("DownBlock2D",) * (n - 2) + ("CrossAttnDownBlock2D",) * 2
        up = ("CrossAttnUpBlock2D",) * 2 + ("UpBlock2D",) * (n - 2)
        unet = UNet2DConditionModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=tuple(unet_channels),
            down_block_types=down,
            up_block_types=up,
            layers_per_block=1,
            cross_attention_dim=token_dim,
            attention_head_dim=8,
            norm_num_groups=min(16, *unet_channels),
        )
        conditioner = LabelConditioner(
            list(condition_fields), list(condition_fields.values()), token_dim, sink_token
        )
        scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule="squaredcos_cap_v2",
            clip_sample=False,
        )
        return cls(unet, conditioner, scheduler, vae, image_size, in_channels)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        condition_fields: dict[str, int] | None = None,
        image_size: int | None = None,
    ) -> ConditionalDiffusion:
        """Load ``save()`` output or a local Stable-Diffusion-format checkpoint (no hub access).

        An SD directory has no ``conditioner/``: one is created from ``condition_fields`` with
        the UNet's ``cross_attention_dim`` and learned by fine-tuning (``train_diffusion``).
        """
        root = Path(directory)
        if not (root / "unet").is_dir():
            raise ShortcutlabError(
                f"{root} has no 'unet' folder; expected a saved diffusion model."
            )
        # low_cpu_mem_usage=False: the loading path that needs no `accelerate` (diffusers would
        # otherwise print an install hint on every load)
        load = {"local_files_only": True, "low_cpu_mem_usage": False}
        unet = UNet2DConditionModel.from_pretrained(root / "unet", **load)
        vae = None
        if (root / "vae").is_dir():
            vae = AutoencoderKL.from_pretrained(root / "vae", **load)
        if (root / "scheduler").is_dir():
            config = DDPMScheduler.load_config(root / "scheduler")
            scheduler = DDPMScheduler.from_config(config)
        else:
            scheduler = DDPMScheduler(clip_sample=False)
        meta = json.loads((root / META_FILE).read_text()) if (root / META_FILE).exists() else {}
        if (root / "conditioner").is_dir():
            conditioner = LabelConditioner.from_pretrained(root / "conditioner", **load)
        else:
            if not condition_fields:
                raise ShortcutlabError(
                    "This checkpoint has no label conditioner; pass condition_fields, e.g. {'y': 2, 'domain': 2}."
                )
            conditioner = LabelConditioner(
                list(condition_fields),
                list(condition_fields.values()),
                unet.config.cross_attention_dim,
            )
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        size = image_size or meta.get("image_size") or _as_int(unet.config.sample_size) * factor
        channels = meta.get("in_channels") or (
            vae.config.in_channels if vae else unet.config.in_channels
        )
        return cls(unet, conditioner, scheduler, vae, size, channels)

    load = from_pretrained

    def save(self, directory: str | Path) -> Path:
        """Write every part in diffusers format (config json + safetensors) under ``directory``."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(root / "unet")
        self.conditioner.save_pretrained(root / "conditioner")
        self.scheduler.save_pretrained(root / "scheduler")
        if self.vae is not None:
            self.vae.save_pretrained(root / "vae")
        meta = {"image_size": self.image_size, "in_channels": self.in_channels, "format": 1}
        (root / META_FILE).write_text(json.dumps(meta, indent=2))
        return root

    # ------------------------------------------------------------------ geometry and codec
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_factor(self) -> int:
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        s = self.image_size // self.latent_factor
        return (self.unet.config.in_channels, s, s)

    @property
    def scaling_factor(self) -> float:
        return 1.0 if self.vae is None else float(self.vae.config.scaling_factor)

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        images = torch.as_tensor(images)
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ShortcutlabError(
                f"Images must be (N, {expected[0]}, {expected[1]}, {expected[2]}); got {tuple(images.shape)}."
            )
        if images.dtype != torch.uint8:
            raise ShortcutlabError("Images must be uint8 (0-255) for the diffusion model.")
        return images

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 images -> model space (pixels in [-1, 1], or scaled autoencoder means)."""
        images = self.check_images(images)
        out = []
        for chunk in images.split(batch_size):
            x = chunk.to(self.device, torch.float32) / 127.5 - 1.0
            if self.vae is not None:
                x = self.vae.encode(x).latent_dist.mean * self.scaling_factor
            out.append(x)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Model space -> uint8 images."""
        out = []
        for chunk in z.split(batch_size):
            x = chunk
            if self.vae is not None:
                x = self.vae.decode(chunk / self.scaling_factor).sample
            out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(out)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images through encode and decode: how this model renders them."""
        return self.decode(self.encode(images))

    # ------------------------------------------------------------------ the network
    def condition_ids(self, cond: Condition | None, batch_size: int) -> torch.Tensor:
        return self.conditioner.ids(cond, batch_size).to(self.device)

    def model_output(
        self,
        x: torch.Tensor,
        t: torch.Tensor | int,
        ids: torch.Tensor,
        guidance: Guidance = 1.0,
        bf16: bool = False,
    ) -> torch.Tensor:
        """UNet output (eps or v, per the scheduler) with classifier-free guidance.

        A number: ``guidance == 1`` is the plain conditional model; otherwise
        ``out = out_null + guidance * (out_cond - out_null)`` (Ho & Salimans 2022, eq. 6).
        A ``{field: scale}`` dict: composable guidance (Liu et al. 2022, eq. 10),
        ``out = out_null + sum_f scale_f * (out_f - out_null)``, where ``out_f`` keeps only field
        ``f`` of ``ids``; a field left out of the dict does not condition. It steers each field on
        its own, so a combination never seen in training (a class under the target-domain token
        in MaskMedPaint) still gets both. All branches run in one batch.
        """
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        null = self.conditioner.null_like(ids)
        if isinstance(guidance, dict):
            names = list(self.conditioner.fields)
            unknown = set(guidance) - set(names)
            if unknown:
                raise ShortcutlabError(
                    f"guidance names unknown condition field(s) {sorted(unknown)}; "
                    f"the model knows {names}."
                )
            branches, weights = [null], []
            for field, scale in guidance.items():
                if float(scale) != 0.0:
                    only = null.clone()
                    col = names.index(field)
                    only[:, col] = ids[:, col]
                    branches.append(only)
                    weights.append(float(scale))
        elif guidance != 1.0:
            branches, weights = [null, ids], [float(guidance)]
        else:
            branches, weights = [ids], []
        k = len(branches)
        x_in, t_in = torch.cat([x] * k), torch.cat([t] * k)
        with autocast(bf16, x.device.type):
            out = self.unet(
                x_in, t_in, encoder_hidden_states=self.conditioner(torch.cat(branches))
            ).sample
        outs = out.float().chunk(k)
        result = outs[0]
        for weight, branch in zip(weights, outs[1:], strict=True):
            result = result + weight * (branch - outs[0])
        return result

    def ddim_scheduler(self) -> DDIMScheduler:
        """A deterministic DDIM scheduler (Song et al. 2021) on the training noise schedule."""
        return DDIMScheduler.from_config(self.scheduler.config)


def autocast(enabled: bool, device_type: str = "cpu"):
    """bf16 autocast on the model's device when asked, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def _as_int(size) -> int:
    return int(size[0] if isinstance(size, (list, tuple)) else size)
