"""Do generated backgrounds look like the target domain? A domain classifier's verdict.

A small CNN learns the domain attribute from real training images with the ROI blanked out (so
it judges the background only), on a seeded 80/20 split; it then labels the generated images,
ROI blanked too. ``target_rate`` is the fraction called target (MaskMedPaint's claim is that it
is high); ``real_accuracy`` on the held-out real images says whether the verdict is worth much.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shortcutlab.models import build_model


def _blank(x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    x = x.float() / 255.0
    if masks is not None:
        x = x * (~masks.bool())[:, None]
    return x


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
) -> dict[str, float]:
    """Train on real (background-only) images to predict the domain; score the generated set."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    d = (real_domain == target).long()
    order = torch.randperm(len(real), generator=gen)
    n_val = max(1, len(real) // 5)
    val, fit = order[:n_val], order[n_val:]
    x = _blank(real, real_masks)
    model = build_model("small-cnn", real.shape[1], 2, real.shape[-1], 64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in fit[torch.randperm(len(fit), generator=gen)].split(batch_size):
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(x[idx]), d[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        real_acc = float((model(x[val]).argmax(1) == d[val]).float().mean())
        xg = _blank(generated, generated_masks)
        calls = torch.cat([model(c).argmax(1) for c in xg.split(256)])
    return {"target_rate": float((calls == 1).float().mean()), "real_accuracy": real_acc}
