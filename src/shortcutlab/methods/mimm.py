"""MIMM (Fay et al., 2023): mutual-information minimisation between task and confounder features.

One confounder, the first attribute. Encoder output ``F = [F_Y, F_Z]``, heads ``y <- F_Y`` and
``z <- F_Z``; ``L = (CE_y + CE_z) / 2 + lambda * MI(F_Y, F_Z)`` with MI the MINE bound
(``estimators.mine``). Alternating optimisation per ``update``: one encoder/heads step (the MI term
back-propagates into the encoder, T fixed), then ``N_B - 1`` steps of T maximising the bound on the
detached features of the same batch (our choice: the features computed before the encoder step,
which saves a forward pass; ``critic_batches: fresh`` draws new batches through the updated
encoder, as the official code does). ``critic`` picks the estimator (MINE, InfoNCE, a
constrained critic; docs/methods.md "Bounded dependence penalties"). ``mi_given_y`` (our
choice, default off) draws the marginal pairs within a class: the term becomes
``I(F_Y; F_Z | y)``.
"""

from __future__ import annotations

import torch
from torch import nn

from shortcutlab.methods.base import Hparam, TaskInfo
from shortcutlab.methods.feature_split import MINEPenaltyMethod
from shortcutlab.methods.registry import register


@register
class MIMM(MINEPenaltyMethod):
    name = "mimm"
    summary = "split features F_Y / F_Z for the first attribute, minimise MINE(F_Y, F_Z)"
    HPARAMS = {
        **MINEPenaltyMethod.HPARAMS,
        "lambda": Hparam(1.5, "weight of the MI term (paper 0.3-1.5)"),
    }

    @classmethod
    def split_attributes(cls, info: TaskInfo) -> list[str]:
        return list(info.attributes[:1])

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        dy, dz = int(self.hparams["f_y_dim"]), int(self.hparams["f_z_dim"])
        self.mines = nn.ModuleList([self.build_mine(dy, dz)])
        self.mine_opt = self.mine_optimizer(self.mines)

    def critic_pairs(self, f_y, f_zs):
        return [(self.split_attrs[0], self.mines[0], f_y, f_zs[0])]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        f = self.model.features(batch["x"])
        ce_y, (ce_z,) = self.head_losses(f, batch)
        f_y, (f_z,) = self.split(f)
        mine = self.mines[0]
        groups = self.mine_groups(batch)
        (f_z_pen,) = self.penalty_blocks([f_z])
        mi = mine.lower_bound(f_y.float(), f_z_pen.float(), groups)
        penalty = float(self.hparams["lambda"]) * mi
        loss = (ce_y + ce_z) / 2 + penalty
        scale = self.penalised_step((ce_y + ce_z) / 2, penalty)
        bound = []
        for _ in range(int(self.hparams["n_b"]) - 1):
            a, (b,), g = self.critic_inputs(f, batch)
            bound.append(mine.maximise_step(a, b, self.mine_opt, g))
        attr = self.split_attrs[0]
        return {
            "loss": loss.item(),
            "ce_y": ce_y.item(),
            f"ce_{attr}": ce_z.item(),
            "mi": mi.item(),
            "mi_mine_steps": sum(bound) / len(bound) if bound else mi.item(),
            "mi_grad_scale": scale,
        }
