"""Differentiable distance correlation (Szekely et al. 2007), the dCor penalty of methods.md sec. 2.

``a = cdist(x, x)``, ``b = cdist(y, y)``; double centring gives ``A``, ``B``;
``dCov2 = mean(A*B)``, ``dVar = mean(A*A)``, ``dCor = sqrt(dCov2 / sqrt(dVarX * dVarY))``.
This is the biased (V-statistic) estimator, the default of ``dcor.distance_correlation``.
"""

from __future__ import annotations

import torch


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix (n, n) with an exact zero diagonal and a finite gradient there.

    ``torch.cdist`` goes through a matrix product (inexact zeros) and ``sqrt`` has an infinite
    slope at 0, so the squared distances are formed explicitly and zeros are masked out.
    """
    x = x.reshape(x.shape[0], -1)
    sq = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(-1)
    positive = sq > 0
    return torch.where(positive, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))


def _double_centre(d: torch.Tensor) -> torch.Tensor:
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """dCor(x, y) in [0, 1] for samples ``x`` (n, p) and ``y`` (n, q); differentiable.

    Computed in float64 for agreement with the ``dcor`` package; a constant input (zero distance
    variance) gives 0, as ``dcor`` does, with a zero gradient instead of NaN.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    a = _double_centre(pairwise_distances(x.double()))
    b = _double_centre(pairwise_distances(y.double()))
    dcov2 = (a * b).mean().clamp_min(0.0)
    dvar = (a * a).mean() * (b * b).mean()
    denom = dvar.clamp_min(eps * eps).sqrt()
    r2 = torch.where(dvar > eps * eps, dcov2 / denom, torch.zeros_like(dcov2))
    # sqrt has an infinite slope at 0: below eps the value is 0 and so is the gradient.
    out = torch.where(r2 > eps, r2.clamp_min(eps).sqrt(), torch.zeros_like(r2))
    return out.to(dtype)
