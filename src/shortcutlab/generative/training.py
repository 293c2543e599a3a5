"""Training loops: the KL autoencoder (Rombach et al. 2022) and DDPM denoising (Ho et al. 2020).

``train_diffusion`` is eq. 14 of Ho et al. (the simple loss) with the scheduler's prediction type
(eps, or v for v-prediction checkpoints) and condition dropout for classifier-free guidance. It
fine-tunes a loaded model in place, so MaskMedPaint's two stages are two calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.conditioning import Condition
from shortcutlab.generative.model import ConditionalDiffusion, autocast

ProgressCallback = Callable[[int, int, float], None]  # (step, total, loss)


def stage_callback(progress: Callable[[str, int, int], None] | None, stage: str):
    """A training ``callback(done, total, loss)`` that reports ``progress(stage, done, total)``;
    None without ``progress``."""
    return None if progress is None else (lambda done, total, _loss: progress(stage, done, total))


def start_generator(
    images: torch.Tensor,
    fields: dict[str, int],
    params,
    seed: int,
    progress: Callable[[str, int, int], None] | None = None,
    sink_token: bool = False,
) -> ConditionalDiffusion:
    """The model a generator fine-tunes: ``params.pretrained`` (a saved or Stable-Diffusion-format
    directory, its autoencoder kept), else a new one (``params.latent``, ``unet_channels``,
    ``vae_channels``) whose autoencoder is first trained on ``images`` for
    ``params.autoencoder_steps`` steps (``sink_token``: ``LabelConditioner``'s sink). Shared by
    MaskMedPaint, Latent Drifting and grounding."""
    torch.manual_seed(seed)
    if params.pretrained:
        return ConditionalDiffusion.from_pretrained(params.pretrained, fields, images.shape[-1])
    model = ConditionalDiffusion.create(
        images.shape[-1],
        images.shape[1],
        fields,
        latent=params.latent,
        unet_channels=tuple(params.unet_channels),
        vae_channels=tuple(params.vae_channels),
        sink_token=sink_token,
    )
    if model.vae is not None:
        train_autoencoder(
            model,
            images,
            params.autoencoder_steps,
            params.batch_size,
            seed=seed,
            callback=stage_callback(progress, "autoencoder"),
        )
    return model


def train_autoencoder(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    steps: int = 400,
    batch_size: int = 32,
    lr: float = 2e-3,
    kl_weight: float = 1e-6,
    seed: int = 0,
    callback: ProgressCallback | None = None,
) -> list[float]:
    """Fit the VAE (L1 + tiny KL, our choice), then set ``scaling_factor`` to 1/std of latents."""
    if model.vae is None:
        return []
    images = model.check_images(images)
    gen = torch.Generator().manual_seed(seed)
    vae = model.vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    history = []
    for step in range(steps):
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=gen)
        x = images[idx].to(model.device, torch.float32) / 127.5 - 1.0
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(
            x.device
        )
        recon = vae.decode(z).sample
        loss = F.l1_loss(recon, x) + kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if callback is not None:
            callback(step + 1, steps, history[-1])
    vae.eval()
    vae.register_to_config(scaling_factor=1.0)
    with torch.no_grad():
        std = float(model.encode(images[: min(len(images), 512)]).std())
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
    return history


def train_diffusion(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: Condition | None,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 1e-3,
    cond_dropout: float = 0.1,
    bf16: bool = False,
    seed: int = 0,
    callback: ProgressCallback | None = None,
    replay: tuple[torch.Tensor, Condition | None] | None = None,
    replay_fraction: float = 0.0,
    delta: float = 0.0,
    drift_target: str = "shifted",
) -> list[float]:
    """DDPM training on uint8 ``images`` under ``cond`` (per-image ids, or one id per field).

    ``replay``: (images, cond) mixed into each batch with ``replay_fraction`` (our choice, against
    forgetting when a second stage sees only a few target images). Returns the loss per step.
    ``delta`` != 0: Latent Drifting fine-tuning (docs/methods.md section 7), the forward noise is
    ``eps + delta``; the network regresses the shifted noise (``drift_target="shifted"``) or the
    plain ``eps`` (``"plain"``). ``delta = 0`` is the plain loop, unchanged.
    """
    if steps < 0 or batch_size < 1:
        raise ShortcutlabError("Diffusion training needs steps >= 0 and batch_size >= 1.")
    if drift_target not in ("shifted", "plain"):
        raise ShortcutlabError(f"drift_target must be shifted or plain, not '{drift_target}'.")
    z_all = model.encode(images)
    ids_all = model.conditioner.ids(cond, len(z_all))
    if replay is not None and replay_fraction > 0:
        z_rep = model.encode(replay[0])
        ids_rep = model.conditioner.ids(replay[1], len(z_rep))
    else:
        z_rep = ids_rep = None
    gen = torch.Generator().manual_seed(seed)
    params = list(model.unet.parameters()) + list(model.conditioner.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    model.unet.train()
    model.conditioner.train()
    num_t = model.scheduler.config.num_train_timesteps
    history = []
    for step in range(steps):
        b = min(batch_size, len(z_all))
        n_rep = int(round(b * replay_fraction)) if z_rep is not None else 0
        idx = torch.randint(len(z_all), (b - n_rep,), generator=gen)
        z0, ids = z_all[idx], ids_all[idx]
        if n_rep:
            ridx = torch.randint(len(z_rep), (n_rep,), generator=gen)
            z0, ids = torch.cat([z0, z_rep[ridx]]), torch.cat([ids, ids_rep[ridx]])
        ids = model.conditioner.drop(ids, cond_dropout, gen).to(model.device)
        noise = torch.randn(z0.shape, generator=gen).to(model.device)
        t = torch.randint(num_t, (len(z0),), generator=gen).to(model.device)
        plain_noise = noise
        if delta:
            noise = noise + delta  # Latent Drifting: z_T ~ N(delta, I)
        zt = model.scheduler.add_noise(z0, noise, t)
        if delta and drift_target == "plain":
            noise = plain_noise
        if model.scheduler.config.prediction_type == "v_prediction":
            target = model.scheduler.get_velocity(z0, noise, t)
        else:
            target = noise
        with autocast(bf16, model.device.type):
            pred = model.unet(zt, t, encoder_hidden_states=model.conditioner(ids)).sample
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if callback is not None:
            callback(step + 1, steps, history[-1])
    model.unet.eval()
    model.conditioner.eval()
    return history


@torch.no_grad()
def denoising_loss(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: Condition | None,
    n_draws: int = 4,
    seed: int = 123,
) -> float:
    """Mean denoising loss over fixed (noise, t) draws: a comparable number before/after training."""
    z0 = model.encode(images)
    ids = model.conditioner.ids(cond, len(z0)).to(model.device)
    gen = torch.Generator().manual_seed(seed)
    num_t = model.scheduler.config.num_train_timesteps
    total = 0.0
    for _ in range(n_draws):
        noise = torch.randn(z0.shape, generator=gen).to(model.device)
        t = torch.randint(num_t, (len(z0),), generator=gen).to(model.device)
        zt = model.scheduler.add_noise(z0, noise, t)
        target = (
            model.scheduler.get_velocity(z0, noise, t)
            if model.scheduler.config.prediction_type == "v_prediction"
            else noise
        )
        total += float(F.mse_loss(model.model_output(zt, t, ids), target))
    return total / n_draws
