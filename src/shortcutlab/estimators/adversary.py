"""Adversarial reference (Ganin et al. 2016, gradient reversal): a classifier reads each
confounder ``z_i`` from the task block ``f_y`` while the encoder, through a gradient-reversal
layer, makes it fail (docs/methods.md, "Bounded dependence penalties").

``GradReverse`` is the identity forward and multiplies the gradient by ``-scale`` backward, so one
optimiser step on ``CE(adversary(grad_reverse(f_y)), z)`` moves the adversary down the
cross-entropy and the encoder up it. ``H(z_i) - CE_i`` (the Barber-Agakov bound) is a lower
bound on ``I(f_y; z_i)`` in nats, bounded by ``H(z_i) <= log |z_i|``: the quantity logged as
the penalty's value. With ``given_y`` the adversary also sees ``y`` (one-hot), so it estimates
``I(f_y; z_i | y)`` against ``H(z_i | y)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient times ``-scale`` backward."""
    return GradReverse.apply(x, scale)


class ZAdversary(nn.Module):
    """One small MLP per confounder, ``z_i <- [f_y (, onehot y)]``."""

    def __init__(
        self,
        dim: int,
        cardinalities: list[int],
        hidden: int = 64,
        num_classes: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(dim + num_classes, hidden), nn.ReLU(), nn.Linear(hidden, c))
            for c in cardinalities
        )

    def forward(self, f_y: torch.Tensor, y: torch.Tensor | None = None) -> list[torch.Tensor]:
        h = f_y.float()
        if self.num_classes:
            if y is None:
                raise ValueError("this adversary conditions on y: pass y")
            h = torch.cat([h, F.one_hot(y, self.num_classes).float()], 1)
        return [net(h) for net in self.nets]

    def losses(
        self, f_y: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Cross-entropy of each confounder column of ``z`` (B, k)."""
        return [F.cross_entropy(lo, z[:, i]) for i, lo in enumerate(self.forward(f_y, y))]


def entropy_nats(labels: torch.Tensor, cardinality: int) -> float:
    """Empirical entropy of integer ``labels`` in nats."""
    p = torch.bincount(labels.reshape(-1), minlength=cardinality).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def prior_given(z: torch.Tensor, y: torch.Tensor | None, cardinality: int) -> torch.Tensor:
    """Per row, the batch's distribution of ``z`` among the rows of its class ``y`` (of the
    whole batch when ``y`` is None), add-one smoothed: (B, cardinality)."""
    onehot = F.one_hot(z, cardinality).float()
    if y is None:
        counts = onehot.sum(0, keepdim=True).expand_as(onehot)
    else:
        same = (y.unsqueeze(1) == y.unsqueeze(0)).float()
        counts = same @ onehot
    counts = counts + 1.0
    return counts / counts.sum(1, keepdim=True)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i -sum_k target[i, k] log softmax(logits)[i, k]``; minimal (the entropy of the
    target) where the prediction equals the target: the bounded confusion objective."""
    return -(target * F.log_softmax(logits.float(), 1)).sum(1).mean()
