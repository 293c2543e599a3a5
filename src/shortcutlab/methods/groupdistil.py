"""GroupDistil: group-aware knowledge distillation (Vilouras et al., MLMI 2023).

The distillation loss is reweighted per group as in GroupDRO (Sagawa et al. 2020).
**(our choice, the paper's exact loss was not public; methods.md section 4)**: per group
``l_g = mean_{i in g} [(1 - alpha) CE(s_i, y_i) + alpha tau^2 KL(softmax(t_i/tau) || softmax(s_i/tau))]``,
``q_g <- q_g exp(eta l_g)`` renormalised, ``L = sum_g q_g l_g``. Groups absent from a batch keep
their weight before renormalisation (as in our GroupDRO), so with ``alpha = 0`` the method is
GroupDRO exactly.
"""

from __future__ import annotations

import torch

from shortcutlab.methods.base import Hparam
from shortcutlab.methods.groupdro import group_weighted_loss
from shortcutlab.methods.kd import KD, distillation_loss
from shortcutlab.methods.registry import register


@register
class GroupDistil(KD):
    name = "groupdistil"
    summary = "distillation with GroupDRO weights on the per-group distillation loss"
    needs_every_group = True
    HPARAMS = {
        **KD.HPARAMS,
        "eta": Hparam(
            0.01, "step size of the group weights", lambda r: float(10 ** r.uniform(-3, -1))
        ),
        "weight_decay": Hparam(
            1e-3,
            "AdamW weight decay (strong, as for GroupDRO)",
            lambda r: float(10 ** r.uniform(-4, -2)),
        ),
    }

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        self.register_buffer("q", torch.full((info.num_groups,), 1.0 / info.num_groups))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = distillation_loss(
            self.predict(batch["x"]),
            self.teacher_logits(batch),
            batch["y"],
            self.hparams["alpha"],
            self.hparams["tau"],
        )
        loss, q, group_loss = group_weighted_loss(losses, batch["g"], self.q, self.hparams["eta"])
        self.q.copy_(q)
        self.step(loss)
        present = torch.bincount(batch["g"], minlength=len(q)) > 0
        return {"loss": loss.item(), "worst_group_loss": group_loss[present].max().item()}
