"""CutMix (Yun et al., ICCV 2019): paste a random box from another image of the batch; the loss
mixes both labels in proportion to the pasted area. A baseline in MaskMedPaint's code."""

from __future__ import annotations

import math

import torch

from shortcutlab.methods.base import Hparam, Method
from shortcutlab.methods.registry import register


@register
class CutMix(Method):
    name = "cutmix"
    summary = "paste a random box from another image; mix the labels by area"
    HPARAMS = {
        "alpha": Hparam(1.0, "Beta(alpha, alpha) of the kept area"),
        "prob": Hparam(1.0, "probability of mixing a batch"),
    }

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        x, y = batch["x"], batch["y"]
        if torch.rand(()) >= self.hparams["prob"]:
            loss = self.weighted_ce(self.predict(x), y)
        else:
            lam = float(
                torch.distributions.Beta(self.hparams["alpha"], self.hparams["alpha"]).sample()
            )
            perm = torch.randperm(len(y), device=y.device)
            h, w = x.shape[-2:]
            bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
            x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually kept
            logits = self.predict(x)
            loss = lam * self.weighted_ce(logits, y) + (1 - lam) * self.weighted_ce(logits, y[perm])
        self.step(loss)
        return {"loss": loss.item()}
