"""Explicit sampler loops on diffusers schedulers: DDIM sampling, DDIM inversion, masked inpainting.

- ``sample``: DDIM (Song et al. 2021, eq. 12 with eta=0 by default) from ``x_T`` with
  classifier-free guidance; ``x_T`` may be given (inversion output, or a shifted start for
  Latent Drifting).
- ``invert``: deterministic DDIM inversion (the reverse of eq. 12, as in Mokady et al. 2023).
- ``inpaint``: RePaint (Lugmayr et al. 2022, Alg. 1): at every step the known region (the ROI)
  is replaced by the original noised to that timestep, optional resampling (jump back by
  ``q(x_t | x_{t-1})`` and redo the step), ``strength`` < 1 starts from the partially noised
  source (SDEdit, Meng et al. 2022). The ROI is pasted back pixel-exactly at the end.

Every image draws its noise from its own generator seeded by ``seeds[i]``, so an image is
reproducible from its provenance seed whatever the batch it was made in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.conditioning import Condition
from shortcutlab.generative.model import ConditionalDiffusion, Guidance

StepCallback = Callable[[int, int], None]  # (step, total)


def _seeds(seed: int | Sequence[int], n: int) -> list[int]:
    seeds = [int(seed) + i for i in range(n)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != n:
        raise ShortcutlabError(f"Give one seed per image: {len(seeds)} seeds for {n} images.")
    return seeds


class _Noise:
    """Per-image noise streams."""

    def __init__(self, seeds: list[int], shape: tuple[int, ...], device: torch.device):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.shape, self.device = shape, device

    def __call__(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens]).to(
            self.device
        )


def _alpha(scheduler, t: int) -> torch.Tensor:
    return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod


def _eps(
    model: ConditionalDiffusion, out: torch.Tensor, x: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """The noise prediction from the UNet output (eps-, or v-prediction: eps = sqrt(a) v + sqrt(1-a) x)."""
    if model.scheduler.config.prediction_type == "v_prediction":
        return a.sqrt() * out + (1 - a).sqrt() * x
    return out


@torch.no_grad()
def sample(
    model: ConditionalDiffusion,
    cond: Condition | None,
    n: int,
    steps: int = 50,
    guidance: Guidance = 1.0,
    seed: int | Sequence[int] = 0,
    x_T: torch.Tensor | None = None,
    eta: float = 0.0,
    bf16: bool = False,
    decode: bool = True,
    callback: StepCallback | None = None,
    delta: float = 0.0,
) -> torch.Tensor:
    """Generate ``n`` images (uint8) under ``cond``; ``decode=False`` returns model-space samples.

    ``delta`` (Latent Drifting, docs/methods.md section 7): the start is ``N(delta, I)`` (when
    ``x_T`` is not given) and ``delta`` is added to the mean of every reverse step (the paper's
    eq. 4). ``delta = 0`` is the plain sampler.
    """
    sched = model.ddim_scheduler()
    sched.set_timesteps(steps)
    noise = _Noise(_seeds(seed, n), model.sample_shape, model.device)
    ids = model.condition_ids(cond, n)
    x = noise() * sched.init_noise_sigma if x_T is None else x_T.to(model.device).clone()
    if delta and x_T is None:
        x = x + delta
    for i, t in enumerate(sched.timesteps):
        out = model.model_output(x, t, ids, guidance, bf16)
        x = sched.step(out, t, x, eta=eta, variance_noise=noise() if eta > 0 else None).prev_sample
        if delta:
            x = x + delta
        if callback is not None:
            callback(i + 1, len(sched.timesteps))
    return model.decode(x) if decode else x


@torch.no_grad()
def invert(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: Condition | None,
    steps: int = 50,
    guidance: Guidance = 1.0,
    fixed_point_iters: int = 0,
    bf16: bool = False,
    delta: float = 0.0,
) -> torch.Tensor:
    """DDIM inversion: uint8 images -> ``x_T`` that ``sample(..., x_T=...)`` maps back to them.

    Plain inversion evaluates the noise at the less noisy point (the usual approximation);
    ``fixed_point_iters`` > 0 re-evaluates it at the new point, so each step inverts the DDIM
    sampler step exactly when the iteration converges (fixed-point inversion, our option).
    ``delta``: the inverse of ``sample(..., delta=delta)``, each step first takes off the
    ``delta`` that sampling adds to its mean (Latent Drifting; our choice, docs/methods.md).
    """
    sched = model.ddim_scheduler()
    sched.set_timesteps(steps)
    x = model.encode(images)
    ids = model.condition_ids(cond, len(x))
    a_prev = sched.final_alpha_cumprod
    for t in sched.timesteps.flip(0):
        a_t = _alpha(sched, int(t))
        if delta:
            x = x - delta
        x_prev, x_t = x, x
        for _ in range(1 + fixed_point_iters):
            eps = _eps(model, model.model_output(x_t, t, ids, guidance, bf16), x_t, a_t)
            x0 = (x_prev - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
            x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
        x, a_prev = x_t, a_t
    return x


def latent_known_mask(model: ConditionalDiffusion, roi: torch.Tensor) -> torch.Tensor:
    """ROI (N, H, W) -> known mask in model space (N, 1, h, w): cells at least half ROI (our choice)."""
    m = roi[:, None].to(torch.float32)
    if model.latent_factor > 1:
        m = F.avg_pool2d(m, model.latent_factor)
    return (m >= 0.5).to(torch.float32).to(model.device)


@torch.no_grad()
def inpaint(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    roi: torch.Tensor,
    cond: Condition | None,
    steps: int = 50,
    strength: float = 1.0,
    guidance: Guidance = 1.0,
    resample: int = 1,
    seed: int | Sequence[int] = 0,
    eta: float = 0.0,
    bf16: bool = False,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Regenerate everything outside ``roi`` under ``cond``; the ROI pixels stay exactly the source's.

    ``images`` uint8 (N, C, H, W); ``roi`` bool (N, H, W), True = keep. An all-False ROI with
    ``strength=0.5`` is SDEdit img2img; with ``strength=1`` it is plain text2img sampling.
    """
    images = model.check_images(images)
    roi = torch.as_tensor(roi).to(torch.bool)
    if roi.shape != (images.shape[0], images.shape[2], images.shape[3]):
        raise ShortcutlabError(
            f"The ROI mask must be (N, H, W) = {(images.shape[0], *images.shape[2:])}; got {tuple(roi.shape)}."
        )
    if not 0.0 < strength <= 1.0:
        raise ShortcutlabError(f"strength must be in (0, 1]; got {strength}.")
    if resample < 1 or steps < 1:
        raise ShortcutlabError("steps and resample must be at least 1.")
    n = len(images)
    sched = model.ddim_scheduler()
    sched.set_timesteps(steps)
    stride = sched.config.num_train_timesteps // steps
    timesteps = sched.timesteps[steps - max(1, int(round(steps * strength))) :]
    noise = _Noise(_seeds(seed, n), model.sample_shape, model.device)
    ids = model.condition_ids(cond, n)
    z0 = model.encode(images)
    m = latent_known_mask(model, roi)
    if strength >= 1.0:
        z = noise() * sched.init_noise_sigma
    else:
        z = sched.add_noise(z0, noise(), timesteps[:1].repeat(n))
    for i, t in enumerate(timesteps):
        a_t, a_prev = _alpha(sched, int(t)), _alpha(sched, int(t) - stride)
        for u in range(resample):
            known = sched.add_noise(z0, noise(), t.repeat(n))
            z = m * known + (1 - m) * z
            out = model.model_output(z, t, ids, guidance, bf16)
            z_prev = sched.step(
                out, t, z, eta=eta, variance_noise=noise() if eta > 0 else None
            ).prev_sample
            if u < resample - 1:  # RePaint jump back one step: x_t ~ q(x_t | x_{t-1})
                ratio = a_t / a_prev
                z = ratio.sqrt() * z_prev + (1 - ratio).sqrt() * noise()
        z = z_prev
        if callback is not None:
            callback(i + 1, len(timesteps))
    z = m * z0 + (1 - m) * z
    generated = model.decode(z)
    return torch.where(roi[:, None], images, generated)
