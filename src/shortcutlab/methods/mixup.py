"""MixUp (Zhang et al., ICLR 2018): train on convex combinations of image pairs and of their
labels, ``lam ~ Beta(alpha, alpha)``. A baseline in MaskMedPaint's code."""

from __future__ import annotations

import torch

from shortcutlab.methods.base import Hparam, Method
from shortcutlab.methods.registry import register


@register
class MixUp(Method):
    name = "mixup"
    summary = "train on convex combinations of image pairs and their labels"
    HPARAMS = {
        "alpha": Hparam(
            0.4, "Beta(alpha, alpha) of the mixing weight", lambda r: float(10 ** r.uniform(-1, 1))
        )
    }

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x, y = batch["x"], batch["y"]
        lam = float(torch.distributions.Beta(self.hparams["alpha"], self.hparams["alpha"]).sample())
        perm = torch.randperm(len(y), device=y.device)
        logits = self.predict(lam * x + (1 - lam) * x[perm])
        loss = lam * self.weighted_ce(logits, y) + (1 - lam) * self.weighted_ce(logits, y[perm])
        self.step(loss)
        return {"loss": loss.item()}
