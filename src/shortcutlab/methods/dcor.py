"""dCor penalty (methods.md sec. 2): the task block ``f_y`` made independent of the confounders.

Loss ``CE(y | f_y) + sum_i CE(z_i | f_zi) + lambda * dCor(f_y, [f_z1, ..., f_zk])``, one
optimiser; distance correlation as in ``estimators.dcor`` (Szekely et al. 2007). The confounder
heads make ``f_z`` carry the confounders, so the penalty removes them from ``f_y``.
"""

from __future__ import annotations

import torch

from shortcutlab.estimators.dcor import distance_correlation
from shortcutlab.methods.base import Hparam
from shortcutlab.methods.feature_split import BLOCK_HPARAMS, FeatureSplitMethod
from shortcutlab.methods.registry import register


@register
class DCor(FeatureSplitMethod):
    name = "dcor"
    summary = (
        "task and confounder heads on split features, distance correlation penalty between them"
    )
    HPARAMS = {
        **BLOCK_HPARAMS,
        "lambda": Hparam(
            1.0, "weight of dCor(f_y, f_z)", lambda r: float(10 ** r.uniform(-1, 0.5))
        ),
    }

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        f = self.model.features(batch["x"])
        ce_y, ce_z = self.head_losses(f, batch)
        f_y, f_zs = self.split(f)
        dc = distance_correlation(f_y.float(), torch.cat(f_zs, 1).float())
        loss = ce_y + sum(ce_z) + float(self.hparams["lambda"]) * dc
        self.step(loss)
        out = {"loss": loss.item(), "ce_y": ce_y.item(), "dcor": dc.item()}
        out.update({f"ce_{a}": c.item() for a, c in zip(self.split_attrs, ce_z, strict=True)})
        return out
