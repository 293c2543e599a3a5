"""ERM: plain cross-entropy on shuffled batches (the baseline that learns the shortcut)."""

from __future__ import annotations

import torch

from shortcutlab.methods.base import Method
from shortcutlab.methods.registry import register


@register
class ERM(Method):
    name = "erm"
    summary = "empirical risk minimisation: plain cross-entropy"

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        loss = self.weighted_ce(self.predict(batch["x"]), batch["y"])
        self.step(loss)
        return {"loss": loss.item()}
