"""Latent Drifting (Yeganeh et al., CVPR 2025; docs/methods.md section 7): fit, delta search,
counterfactual regeneration.

The drift ``delta`` enters in three places, all in the generative core:

1. fitting: ``train_diffusion(..., delta=, drift_target=)`` shifts the forward noise to
   ``eps + delta`` (the network regresses the shifted or the plain noise);
2. sampling: ``sample(..., delta=)`` starts from ``N(delta, I)`` and adds ``delta`` to the mean
   of every reverse step (the paper's eq. 4);
3. inversion: ``invert(..., delta=)`` undoes exactly that sampler (our choice).

This module fits the generator on the training images under ``(y, attributes...)``, chooses the
sampling ``delta`` by grid search (Monte-Carlo L1 distance between generated and real training
images) and regenerates inverted images under a changed condition (``regenerate``), optionally
keeping everything outside an edit mask from the source's own inversion path (RePaint-style
known-region replacement, Lugmayr et al. 2022).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.conditioning import Condition
from shortcutlab.generative.model import ConditionalDiffusion, Guidance
from shortcutlab.generative.params import LatentDriftParams
from shortcutlab.generative.sampling import _alpha, _eps, latent_known_mask, sample
from shortcutlab.generative.training import stage_callback, start_generator, train_diffusion

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def check_delta(delta: float) -> float:
    """A drift must be a number in [-1, 1]."""
    try:
        value = float(delta)
    except (TypeError, ValueError):
        raise ShortcutlabError(
            f"delta must be a number in [-1, 1] or 'auto'; got {delta!r}"
        ) from None
    if not -1.0 <= value <= 1.0 or not np.isfinite(value):
        raise ShortcutlabError(f"delta must be in [-1, 1]; got {value}")
    return value


def fit_drift_generator(
    images: torch.Tensor,
    cond: dict[str, torch.Tensor],
    fields: dict[str, int],
    params: LatentDriftParams,
    seed: int = 0,
    progress: Progress | None = None,
) -> ConditionalDiffusion:
    """Autoencoder (from scratch only), then diffusion fine-tuning with the drift ``train_delta``.

    ``cond``: per-image ids of each field of ``fields`` (``y`` and the attributes, each a
    cardinality). With ``params.pretrained`` a saved or Stable-Diffusion-format directory is
    fine-tuned instead (``ConditionalDiffusion.from_pretrained``; its autoencoder is kept).
    """
    if len(images) == 0:
        raise ShortcutlabError("the generator needs training images; the training split is empty")
    check_delta(params.train_delta)
    model = start_generator(images, fields, params, seed, progress)
    train_diffusion(
        model,
        images,
        cond,
        params.steps,
        batch_size=params.batch_size,
        lr=params.lr,
        cond_dropout=params.cond_dropout,
        bf16=params.bf16,
        seed=seed + 1,
        callback=stage_callback(progress, f"diffusion (train delta {params.train_delta:g})"),
        delta=float(params.train_delta),
        drift_target=params.drift_target,
    )
    return model


# ---------------------------------------------------------------------------------------------
# the delta search
# ---------------------------------------------------------------------------------------------
def l1_distance(generated: torch.Tensor, real: torch.Tensor, pairs: int = 4096, seed: int = 0):
    """Monte-Carlo L1 distance between two image sets (uint8 or [0, 1] floats): the L1 energy
    distance ``2 E|G - R| - E|G - G'| - E|R - R'|`` over random pairs (mean absolute pixel
    difference per pair). Zero when both sets come from one distribution; unlike the plain
    ``E|G - R|`` it does not prefer a blurred mean image (our choice)."""
    g = _unit(generated).flatten(1)
    r = _unit(real).flatten(1)
    gen = torch.Generator().manual_seed(seed)

    def cross(a, b):
        i = torch.randint(len(a), (pairs,), generator=gen)
        j = torch.randint(len(b), (pairs,), generator=gen)
        return float((a[i] - b[j]).abs().mean())

    return 2 * cross(g, r) - cross(g, g) - cross(r, r)


def _unit(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def search_delta(
    model: ConditionalDiffusion,
    real: torch.Tensor,
    cond: dict[str, torch.Tensor],
    grid: Sequence[float],
    n: int = 128,
    steps: int = 25,
    guidance: Guidance = 1.0,
    seed: int = 0,
    distance: Callable[[torch.Tensor, torch.Tensor], float] = l1_distance,
    progress: Progress | None = None,
) -> tuple[float, list[tuple[float, float]]]:
    """Grid search of the sampling ``delta``: for each value, ``n`` samples (same seeds and the
    conditions of ``n`` rows drawn from ``real``, the *training* images) and their ``distance``
    to ``real``. Returns the argmin and the curve ``[(delta, distance), ...]``."""
    grid = [check_delta(d) for d in grid]
    if not grid:
        raise ShortcutlabError("the delta grid is empty")
    rng = np.random.default_rng(seed)
    rows = torch.as_tensor(rng.choice(len(real), size=min(n, len(real)), replace=False))
    part = {k: torch.as_tensor(v)[rows] for k, v in cond.items()}
    seeds = [seed * 1_000_003 + i for i in range(len(rows))]
    curve = []
    for k, d in enumerate(grid):
        generated = sample_batched(model, part, steps, guidance, seeds, d)
        curve.append((d, float(distance(generated, real))))
        if progress is not None:
            progress("delta search", k + 1, len(grid))
    best = min(curve, key=lambda p: (p[1], abs(p[0])))[0]
    return best, curve


def sample_batched(
    model: ConditionalDiffusion,
    cond: dict[str, torch.Tensor],
    steps: int,
    guidance: Guidance,
    seeds: Sequence[int],
    delta: float = 0.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """``sample`` in chunks: one image per seed, row ``i`` under ``{f: cond[f][i]}``."""
    out = []
    for s in range(0, len(seeds), batch_size):
        part = {k: torch.as_tensor(v)[s : s + batch_size] for k, v in cond.items()}
        chunk = list(seeds[s : s + batch_size])
        out.append(sample(model, part, len(chunk), steps, guidance, chunk, delta=delta))
    return torch.cat(out)


def plot_delta_curve(curve: list[tuple[float, float]], best: float, path: str | Path) -> Path:
    """The delta search curve as a PNG (the chosen delta marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    xs, ys = zip(*curve, strict=True)
    ax.plot(xs, ys, "o-")
    ax.axvline(best, color="tab:red", ls="--", label=f"chosen delta = {best:g}")
    ax.set_xlabel("delta")
    ax.set_ylabel("MC L1 distance to train images")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# inversion path and regeneration under a changed condition
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def invert_path(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: Condition | None,
    steps: int = 25,
    delta: float = 0.0,
    guidance: Guidance = 1.0,
) -> list[torch.Tensor]:
    """DDIM inversion that keeps every latent: ``[x_0, x_{t_1}, ..., x_T]`` (the same arithmetic
    as ``sampling.invert``, whose output is the last entry)."""
    sched = model.ddim_scheduler()
    sched.set_timesteps(steps)
    x = model.encode(images)
    ids = model.condition_ids(cond, len(x))
    path = [x]
    a_prev = sched.final_alpha_cumprod
    for t in sched.timesteps.flip(0):
        a_t = _alpha(sched, int(t))
        if delta:
            x = x - delta
        eps = _eps(model, model.model_output(x, t, ids, guidance), x, a_t)
        x0 = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        x = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
        a_prev = a_t
        path.append(x)
    return path


@torch.no_grad()
def regenerate(
    model: ConditionalDiffusion,
    path: list[torch.Tensor],
    cond: Condition | None,
    steps: int = 25,
    guidance: Guidance = 1.0,
    delta: float = 0.0,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample from an inversion ``path``'s end under ``cond`` (the same loop as ``sample``).

    ``keep`` (N, H, W) bool, True = outside the edit mask: there the latent is replaced at every
    step by the source's own inversion latent of that step (as RePaint replaces the known
    region); ``counterfactuals`` then pastes the source pixels back, pixel-exact.
    """
    sched = model.ddim_scheduler()
    sched.set_timesteps(steps)
    x = path[-1].clone()
    n = len(x)
    ids = model.condition_ids(cond, n)
    m = None if keep is None else latent_known_mask(model, keep)
    for i, t in enumerate(sched.timesteps):
        if m is not None:
            x = m * path[len(path) - 1 - i] + (1 - m) * x
        out = model.model_output(x, t, ids, guidance)
        x = sched.step(out, t, x, eta=0.0).prev_sample
        if delta:
            x = x + delta
    if m is not None:
        x = m * path[0] + (1 - m) * x
    return model.decode(x)
