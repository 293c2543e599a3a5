"""dCor penalty (methods.md sec. 2): the task block ``f_y`` made independent of the confounders.

Loss ``CE(y | f_y) + sum_i CE(z_i | f_zi) + lambda * dCor(f_y, [f_z1, ..., f_zk])``, one
optimiser; distance correlation as in ``estimators.dcor`` (Szekely et al. 2007). The confounder
heads make ``f_z`` carry the confounders, so the penalty removes them from ``f_y``.
"""

from __future__ import annotations

import numpy as np
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

    @torch.no_grad()
    def penalty_rows(self, val: dict[str, np.ndarray], seed: int) -> list[dict]:
        """``dcor_penalty``: the training penalty on (at most 1,000) val rows."""
        n = len(val["f_y"])
        idx = np.random.default_rng(seed).permutation(n)[:1000]
        f_y = torch.as_tensor(val["f_y"][idx], dtype=torch.float64)
        f_z = torch.as_tensor(
            np.concatenate([val[f"f_{a}"][idx] for a in self.split_attrs], 1), dtype=torch.float64
        )
        value = float(distance_correlation(f_y, f_z))
        return [{"split": "val", "target": "all", "metric": "dcor_penalty", "value": value}]

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
