"""Adversarial reference for the split methods (docs/methods.md, "Bounded dependence
penalties"): a ``z`` classifier on ``f_y`` trained through gradient reversal (Ganin et al. 2016).

Blocks and heads as in dCor / MIMM-X (``feature_split``). One optimiser step per ``update`` on

    L = CE(y | f_y) + sum_i CE(z_i | f_zi) + lambda * sum_i CE(z_i | A_i(GRL(f_y)))

The adversaries ``A_i`` descend their cross-entropy, the encoder (behind the reversal) ascends
it, so ``f_y`` is pushed to carry no ``z_i`` a classifier can read (``adv_mode: reverse``).
Ascending a cross-entropy has no maximum: on the digits set the encoder met it by making the
adversary confidently wrong and lost the task and the confounder heads with it (docs/RESULTS.md).
``adv_mode: confusion`` (the default, after Alvi et al. 2018) bounds it: the encoder instead
descends the cross-entropy between the adversary's prediction and the batch's ``p(z_i | y)``
(``p(z_i)`` without ``adv_given_y``), whose minimum is reached when the adversary can do no
better than the prior. In both modes the adversaries are trained only by their own optimiser. The adversary's value is
bounded (``H(z_i) - CE_i <= log |z_i|``), unlike the DV bound between two deterministic blocks.
``adv_given_y`` (default on, our choice) gives the adversary ``y`` as well, so it removes only
the ``z``-information beyond ``y`` (``I(f_y; z | y)``); at P(z = y) = 0.9 an adversary without
``y`` can read ``z`` off any ``f_y`` that predicts ``y``. ``max(n_b - 1, 1)`` adversary-only
steps per update on the detached ``f_y`` train the adversary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shortcutlab.estimators.adversary import (
    ZAdversary,
    entropy_nats,
    grad_reverse,
    prior_given,
    soft_cross_entropy,
)
from shortcutlab.methods.base import Hparam
from shortcutlab.methods.feature_split import BLOCK_HPARAMS, FeatureSplitMethod
from shortcutlab.methods.registry import register


@register
class ZAdversarial(FeatureSplitMethod):
    name = "zadv"
    summary = (
        "split features; a z classifier on f_y behind gradient reversal (adversarial reference)"
    )
    HPARAMS = {
        **BLOCK_HPARAMS,
        "lambda": Hparam(1.0, "weight of the adversary's cross-entropy (reversed into f_y)"),
        "adv_hidden": Hparam(64, "width of each adversary's hidden layer"),
        "adv_given_y": Hparam(True, "the adversary also sees y: removes I(f_y; z | y) only"),
        "adv_lr": Hparam(1e-3, "Adam lr of the adversary's extra steps"),
        "n_b": Hparam(2, "one encoder step, then n_b - 1 adversary-only steps per update"),
        "adv_mode": Hparam(
            "confusion",
            "confusion: the encoder pulls the adversary to the prior p(z | y) (bounded); "
            "reverse: gradient reversal, the encoder ascends the adversary's CE",
            choices=("confusion", "reverse"),
        ),
    }

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        cards = [info.attribute_cardinalities[c] for c in self.attr_columns]
        given_y = info.num_classes if self.hparams["adv_given_y"] else 0
        self.adversary = ZAdversary(
            int(self.hparams["f_y_dim"]), cards, int(self.hparams["adv_hidden"]), given_y
        )
        self.adv_opt = torch.optim.Adam(
            self.adversary.parameters(), lr=float(self.hparams["adv_lr"])
        )

    def z_columns(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["z"][:, self.attr_columns]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        f = self.model.features(batch["x"])
        ce_y, ce_z = self.head_losses(f, batch)
        f_y, _ = self.split(f)
        z = self.z_columns(batch)
        y = batch["y"] if self.hparams["adv_given_y"] else None
        lam = float(self.hparams["lambda"])
        if self.hparams["adv_mode"] == "reverse":
            adv = self.adversary.losses(grad_reverse(f_y), z, y)
            penalty = lam * sum(adv)
        else:
            logits = self.adversary(f_y, y)
            adv = [F.cross_entropy(lo.detach(), z[:, i]) for i, lo in enumerate(logits)]
            penalty = lam * sum(
                soft_cross_entropy(
                    lo, prior_given(z[:, i], batch["y"] if y is not None else None, lo.shape[1])
                )
                for i, lo in enumerate(logits)
            )
        loss = ce_y + sum(ce_z) + penalty
        self.step(loss)
        for _ in range(max(int(self.hparams["n_b"]) - 1, 1)):
            extra = sum(self.adversary.losses(f_y.detach(), z, y))
            self.adv_opt.zero_grad(set_to_none=True)
            extra.backward()
            self.adv_opt.step()
        out = {"loss": loss.item(), "ce_y": ce_y.item()}
        for i, a in enumerate(self.split_attrs):
            out[f"ce_{a}"] = ce_z[i].item()
            out[f"adv_ce_{a}"] = adv[i].item()
            # Barber-Agakov bound on I(f_y; z_i) (batch entropy of z_i; given y: an upper
            # estimate of the bound, H(z_i) >= H(z_i | y))
            card = self.info.attribute_cardinalities[self.attr_columns[i]]
            out[f"adv_mi_{a}"] = entropy_nats(z[:, i], card) - adv[i].item()
        return out
