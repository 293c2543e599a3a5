"""Counterfactual images from a label-conditioned diffusion model (docs/methods.md section 7).

An image is inverted (DDIM) under its own condition and regenerated under the condition with one
field changed (the label ``y`` or one attribute); everything else in the condition stays. With a
drift ``delta`` the inversion and the regeneration both use it (Latent Drifting). Any
``ConditionalDiffusion`` whose condition fields include the flipped one works, so MaskMedPaint's
model can be scored the same way (``evaluation/generation_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative.latent_drift import invert_path, regenerate
from shortcutlab.generative.model import ConditionalDiffusion, Guidance

Progress = Callable[[str, int, int], None]


def flipped_values(values: np.ndarray, field: str, cardinality: int, to: int | None = None):
    """The new value of ``field`` for each row: ``1 - v`` for a binary field, else ``to``."""
    values = np.asarray(values, dtype=np.int64)
    if to is None:
        if cardinality != 2:
            raise ShortcutlabError(
                f"'{field}' has {cardinality} values; say which one to flip to with --to VALUE"
            )
        return 1 - values
    if not 0 <= int(to) < cardinality:
        raise ShortcutlabError(f"--to {to} is not a value of '{field}' (0 to {cardinality - 1})")
    return np.full_like(values, int(to))


@torch.no_grad()
def counterfactuals(
    model: ConditionalDiffusion,
    images: torch.Tensor,
    cond: dict[str, torch.Tensor],
    field: str,
    new_values: torch.Tensor | np.ndarray,
    steps: int = 25,
    guidance: Guidance = 1.0,
    delta: float = 0.0,
    keep: torch.Tensor | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    label: str = "counterfactuals",
) -> torch.Tensor:
    """uint8 counterfactuals: row ``i`` inverted under ``{f: cond[f][i]}`` (guidance 1) and
    regenerated under the same condition with ``field`` set to ``new_values[i]``.

    ``keep`` (N, H, W) bool: pixels outside the edit mask, kept from the source (RePaint-style).
    Passing ``new_values = cond[field]`` is the null intervention (composition).
    """
    if field not in cond:
        raise ShortcutlabError(f"the generator is not conditioned on '{field}'")
    new_values = torch.as_tensor(np.asarray(new_values), dtype=torch.long)
    out = []
    n = len(images)
    for s in range(0, n, batch_size):
        sl = slice(s, s + batch_size)
        own = {k: torch.as_tensor(v)[sl] for k, v in cond.items()}
        path = invert_path(model, images[sl], own, steps, delta)
        new = {**own, field: new_values[sl]}
        part_keep = None if keep is None else torch.as_tensor(keep)[sl]
        generated = regenerate(model, path, new, steps, guidance, delta, part_keep)
        if part_keep is not None:  # pixel-exact outside the edit mask
            generated = torch.where(part_keep[:, None].to(torch.bool), images[sl], generated)
        out.append(generated)
        if progress is not None:
            progress(label, min(n, s + batch_size), n)
    return torch.cat(out) if out else images[:0].clone()
