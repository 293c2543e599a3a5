"""Do generated backgrounds look like the target domain? A domain classifier's verdict.

A small CNN learns the domain attribute from real training images with the ROI blanked out (so
it judges the background only), on a seeded 80/20 split; it then labels the generated images,
ROI blanked too. ``target_rate`` is the fraction called target (MaskMedPaint's claim is that it
is high); ``real_accuracy`` (balanced over the two domains) on the held-out real images says
whether the verdict is worth much.

Two choices keep the verdict about the domain rather than about how images were made:

- The loss weighs both domains equally: with 1,000 source and 100 target images an unweighted
  classifier calls anything unusual "source".
- ``render``: the real images pass through the generator's own rendering (for a latent model its
  autoencoder's encode-decode) before the classifier sees them. Without it the classifier can
  separate the real domains by fine texture that every decoded image lacks, and then calls even
  autoencoded *real target* images "source" (measured: 0% with a 600-step autoencoder).
  ``raw_target_rate`` is the share of held-out real target images, not rendered, called target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from shortcutlab.models import build_model

Render = Callable[[torch.Tensor], torch.Tensor]  # uint8 (N, C, H, W) -> uint8 (N, C, H, W)


def _blank(x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    x = x.float() / 255.0
    if masks is not None:
        x = x * (~masks.bool())[:, None]
    return x


def _rendered(x: torch.Tensor, render: Render | None, batch: int = 128) -> torch.Tensor:
    if render is None:
        return x
    with torch.no_grad():
        return torch.cat([render(c) for c in x.split(batch)])


def domain_target_rate(
    real: torch.Tensor,
    real_domain: torch.Tensor,
    real_masks: torch.Tensor | None,
    generated: torch.Tensor,
    generated_masks: torch.Tensor | None,
    target: int = 1,
    epochs: int = 10,
    batch_size: int = 64,
    seed: int = 0,
    render: Render | None = None,
) -> dict[str, float]:
    """Train on real (background-only) images to predict the domain; score the generated set."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = (real_domain == target).long()
    order = torch.randperm(len(real), generator=gen)
    n_val = max(1, len(real) // 5)
    val, fit = order[:n_val], order[n_val:]
    x = _blank(_rendered(real, render), real_masks)
    counts = torch.bincount(d[fit], minlength=2).float()
    weight = counts.sum() / (2 * counts.clamp(min=1))
    model = build_model("small-cnn", real.shape[1], 2, real.shape[-1], 64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in fit[torch.randperm(len(fit), generator=gen)].split(batch_size):
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), d[idx], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()

    def predict(xb: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(c).argmax(1) for c in xb.split(256)])

    with torch.no_grad():
        pred, dv = predict(x[val]), d[val]
        recalls = [float((pred[dv == c] == c).float().mean()) for c in (0, 1) if (dv == c).any()]
        calls = predict(_blank(generated, generated_masks))
        out = {
            "target_rate": float((calls == 1).float().mean()),
            "real_accuracy": sum(recalls) / len(recalls),
        }
        held = val[dv == 1]
        if render is not None and len(held):
            masks = None if real_masks is None else real_masks[held]
            out["raw_target_rate"] = float((predict(_blank(real[held], masks)) == 1).float().mean())
    return out
