"""GroupDRO (Sagawa et al., ICLR 2020, Algorithm 1): online exponentiated-gradient group weights.

Per step: per-group mean losses ``l_g``; ``q_g <- q_g * exp(eta * l_g)``, renormalised;
loss ``sum_g q_g l_g``. Groups are the joint (y, z1..zk) cells. GroupDRO needs strong
regularisation to generalise (the paper's finding), hence the larger default weight decay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shortcutlab.methods.base import Hparam, Method
from shortcutlab.methods.registry import register


def group_weighted_loss(
    losses: torch.Tensor, g: torch.Tensor, q: torch.Tensor, eta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One GroupDRO step on per-example losses: returns ``(L, new q, per-group losses l_g)``.

    Groups absent from the batch get no exponentiated update (they only lose weight through the
    renormalisation).
    """
    n = len(q)
    counts = torch.bincount(g, minlength=n).float()
    sums = torch.zeros(n, device=losses.device).index_add(0, g, losses.float())
    present = counts > 0
    group_loss = torch.where(present, sums / counts.clamp_min(1), torch.zeros_like(sums))
    with torch.no_grad():
        new_q = q * torch.exp(eta * group_loss.detach() * present)
        new_q = new_q / new_q.sum()
    return (new_q * group_loss).sum(), new_q, group_loss


@register
class GroupDRO(Method):
    name = "groupdro"
    summary = "minimise the worst group's loss through exponentiated-gradient group weights"
    needs_every_group = True
    HPARAMS = {
        "eta": Hparam(
            0.01, "step size of the group weights", lambda r: float(10 ** r.uniform(-3, -1))
        ),
        "weight_decay": Hparam(
            1e-3,
            "AdamW weight decay (strong, as the paper recommends)",
            lambda r: float(10 ** r.uniform(-4, -2)),
        ),
    }

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        self.register_buffer("q", torch.full((info.num_groups,), 1.0 / info.num_groups))

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = F.cross_entropy(self.predict(batch["x"]).float(), batch["y"], reduction="none")
        loss, q, group_loss = group_weighted_loss(losses, batch["g"], self.q, self.hparams["eta"])
        self.q.copy_(q)
        self.step(loss)
        # absent groups carry loss 0 and cross-entropy is >= 0, so the max is a present group's
        return {"loss": loss.item(), "worst_group_loss": group_loss.max().item()}
