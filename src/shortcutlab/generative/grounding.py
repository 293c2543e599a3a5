"""Zero-shot grounding from the label-conditioned diffusion model's cross-attention
(Vilouras et al., IEEE JBHI, arXiv 2404.12920; docs/methods.md section 8).

The recipe, on our ``ConditionalDiffusion`` (one learned token per condition field):

1. DDIM-invert each image under its own labels (``sampling.invert``, no guidance), recording the
   softmax cross-attention of the UNet's ``attn2`` layers (``CrossAttentionRecorder``).
2. Keep the chosen layers (``layers``: indices into the cross-attention layers in the order they
   run, down -> mid -> up) and the middle timesteps (``window``: a fraction of the inversion
   steps; the paper keeps steps 120-179 of 300, i.e. (0.4, 0.6)). The paper keeps the middle
   layers of its UNet ([3, 4, 6, 7]); on our small UNets that choice does not localise (measured
   per layer on the square model of tests/test_grounding.py: pixel AUROC 0.3-0.75 for every
   layer but the last, 1.0 for the last), so the default is the last cross-attention layer,
   the finest map of the up path (our choice; ``layers`` changes it, chosen on val).
3. Take the condition token's map (``token``: ``y`` -> where the finding is; an attribute ->
   where the shortcut is drawn), averaged over heads; min-max normalise each (layer, step) map,
   resize it to the image (bilinear), average over layers and steps.
4. Gaussian blur (``sigma`` 2.5, scikit-image), renormalise to [0, 1], Otsu's threshold
   (scikit-image), heatmap x mask.

The paper inverts with 300 steps; ``steps`` defaults to 50 here (the CPU cost; docs/PERFORMANCE.md)
with the same window fraction. Layer and window choice are parameters, chosen on val if changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.attention import CrossAttentionRecorder
from shortcutlab.generative.conditioning import Condition
from shortcutlab.generative.model import ConditionalDiffusion
from shortcutlab.generative.sampling import invert

__all__ = ["Grounding", "GroundingParams", "attention_layers", "ground", "postprocess"]


@dataclass
class GroundingParams:
    """The recipe's choices; defaults follow the paper except ``steps`` (300 there) and
    ``layers`` (see the module docstring)."""

    steps: int = 50
    window: tuple[float, float] = (0.4, 0.6)
    layers: tuple[int, ...] | None = None  # None: the last (finest) cross-attention layer
    sigma: float = 2.5
    otsu: bool = True
    batch_size: int = 16


@dataclass
class Grounding:
    """Per image (N, H, W): ``raw`` the averaged attention map in [0, 1], ``smooth`` after the
    blur, ``mask`` Otsu's foreground, ``heatmap`` = smooth x mask (the paper's output)."""

    raw: np.ndarray
    smooth: np.ndarray
    mask: np.ndarray
    heatmap: np.ndarray
    layers: list[str]
    timesteps: list[int]


def attention_layers(model: ConditionalDiffusion) -> list[str]:
    """The UNet's cross-attention layers in the order they run (down, mid, up)."""
    names = [n for n in model.unet.attn_processors if n.endswith("attn2.processor")]
    rank = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    return sorted(names, key=lambda n: (rank.get(n.split(".")[0], 3), names.index(n)))


def _chosen_layers(model: ConditionalDiffusion, layers: Sequence[int] | None) -> list[str]:
    names = attention_layers(model)
    if not names:
        raise ShortcutlabError("this diffusion model has no cross-attention layers to ground with")
    if layers is None:
        return names[-1:]
    bad = [i for i in layers if not -len(names) <= i < len(names)]
    if bad:
        raise ShortcutlabError(
            f"grounding layer {bad[0]} does not exist; the model has {len(names)} cross-attention "
            f"layers (0..{len(names) - 1})"
        )
    return [names[i] for i in layers]


def _window(steps: int, window: tuple[float, float]) -> list[int]:
    lo, hi = window
    if not 0.0 <= lo < hi <= 1.0:
        raise ShortcutlabError(f"the grounding window must satisfy 0 <= lo < hi <= 1, not {window}")
    keep = [i for i in range(steps) if lo <= i / steps < hi]
    return keep or [min(int(lo * steps), steps - 1)]


def postprocess(raw: np.ndarray, sigma: float = 2.5, otsu: bool = True):
    """Blur (scikit-image ``gaussian``), renormalise to [0, 1], Otsu mask; per image."""
    from skimage.filters import gaussian, threshold_otsu

    smooth = (
        np.stack([gaussian(r, sigma=sigma, preserve_range=True) for r in raw]) if len(raw) else raw
    )
    smooth = np.stack([_minmax(s) for s in smooth]) if len(smooth) else smooth
    masks = np.ones_like(smooth, dtype=bool)
    if otsu:
        for i, s in enumerate(smooth):
            if s.max() > s.min():
                masks[i] = s > threshold_otsu(s)
    return smooth, masks, smooth * masks


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def check_token(model: ConditionalDiffusion, token: str) -> int:
    fields = list(model.conditioner.fields)
    if token not in fields:
        raise ShortcutlabError(
            f"the diffusion model has no token '{token}'; its condition tokens are "
            f"{', '.join(fields)}"
        )
    return model.conditioner.token_index(token)


@torch.no_grad()
def ground(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: Condition | None,
    token: str,
    params: GroundingParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Grounding:
    """Grounding heatmaps of ``token`` for uint8 ``images`` (N, C, H, W) under ``cond``
    (per-image ids of the model's condition fields, usually the images' own labels);
    ``progress(stage, done, total)`` after each batch."""
    p = params or GroundingParams()
    k = check_token(model, token)
    images = model.check_images(torch.as_tensor(images))
    if p.steps < 1:
        raise ShortcutlabError("grounding needs at least one inversion step")
    chosen = _chosen_layers(model, p.layers)
    keep = _window(p.steps, p.window)
    sched = model.ddim_scheduler()
    sched.set_timesteps(p.steps)
    timesteps = [int(t) for t in sched.timesteps.flip(0)]
    n, size = len(images), model.image_size
    ids = model.condition_ids(cond, n).cpu()
    raw = []
    for start in range(0, n, p.batch_size):
        part = slice(start, start + p.batch_size)
        batch_cond = dict(zip(model.conditioner.fields, ids[part].T, strict=True))
        with CrossAttentionRecorder(model.unet) as rec:
            invert(model, images[part], batch_cond, steps=p.steps)
        acc = torch.zeros(len(images[part]), 1, size, size)
        count = 0
        for name in chosen:
            calls = rec.maps.get(name)
            if not calls or len(calls) != p.steps:
                raise ShortcutlabError(f"no cross-attention was recorded at layer '{name}'")
            for i in keep:
                probs = calls[i].float().mean(1)[..., k]  # (B, HW): mean over heads
                side = int(np.sqrt(probs.shape[1]))
                grid = probs.reshape(-1, 1, side, side).cpu()
                lo = grid.amin(dim=(2, 3), keepdim=True)
                hi = grid.amax(dim=(2, 3), keepdim=True)
                grid = (grid - lo) / (hi - lo).clamp_min(1e-12)
                acc += F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
                count += 1
        raw.append((acc[:, 0] / count).numpy())
        if progress is not None:
            progress(f"ground ({token})", min(start + p.batch_size, n), n)
    raw_all = np.concatenate(raw) if raw else np.zeros((0, size, size), np.float32)
    raw_all = np.stack([_minmax(r) for r in raw_all]) if len(raw_all) else raw_all
    smooth, masks, heat = postprocess(raw_all, p.sigma, p.otsu)
    return Grounding(raw_all, smooth, masks, heat, chosen, [timesteps[i] for i in keep])
