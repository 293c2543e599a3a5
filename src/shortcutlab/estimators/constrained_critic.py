"""Constrained statistics networks for the DV bound (docs/methods.md, "Bounded dependence
penalties"): a critic whose slope is limited cannot make the bound grow without limit between
two deterministic feature blocks, so the penalty measures a dependence at the critic's
resolution instead of how far an unconstrained critic has got.

- ``SpectralMINE``: every linear layer spectrally normalised (Miyato et al. 2018) and no batch
  norm, so ``T`` is Lipschitz: ``|T(a, b) - T(a', b')| <= ||a - a'|| + ||b - b'||``
  (``<= sqrt(2) ||(a, b) - (a', b')||``); the first layer is applied as ``W_a a + W_b b``, each
  factor normalised.
- ``GradientPenaltyMINE``: no batch norm; the critic's training objective subtracts
  ``gp_weight * mean_i ||grad_{a,b} T(a_i, b_i)||^2`` over the joint pairs (a soft slope limit,
  after Gulrajani et al. 2017). Only the critic's maximisation step sees the penalty; the bound
  that reaches the encoder is the plain DV bound.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from shortcutlab.estimators.mine import MINE


class SpectralMINE(MINE):
    def __init__(self, dim_a: int, dim_b: int, hidden: int = 400, layers: int = 3, **kw):
        kw.pop("batch_norm", None)
        super().__init__(dim_a, dim_b, hidden, layers, batch_norm=False, **kw)
        self.in_a = spectral_norm(self.in_a)
        self.in_b = spectral_norm(self.in_b)
        for i, m in enumerate(self.body):
            if isinstance(m, nn.Linear):
                self.body[i] = spectral_norm(m)


class GradientPenaltyMINE(MINE):
    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        hidden: int = 400,
        layers: int = 3,
        gp_weight: float = 1.0,
        **kw,
    ):
        kw.pop("batch_norm", None)
        super().__init__(dim_a, dim_b, hidden, layers, batch_norm=False, **kw)
        self.gp_weight = gp_weight

    def joint_slope(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``mean_i ||grad_{a,b} T(a_i, b_i)||^2`` over the joint pairs (differentiable)."""
        a = a.detach().float().requires_grad_(True)
        b = b.detach().float().requires_grad_(True)
        t = self.body(self.in_a(a.flatten(1)) + self.in_b(b.flatten(1)))
        ga, gb = torch.autograd.grad(t.sum(), (a, b), create_graph=True)
        return (ga.pow(2).flatten(1).sum(1) + gb.pow(2).flatten(1).sum(1)).mean()

    def training_objective(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        objective, value = super().training_objective(a, b, groups)
        return objective - self.gp_weight * self.joint_slope(a, b), value
