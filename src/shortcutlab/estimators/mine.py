"""MINE (Belghazi et al., ICML 2018): a neural Donsker-Varadhan lower bound on I(A; B).

As specified in methods.md sec. 3 (the MIMM / MIMM-X estimator): a statistics network
``T = 3 x [Linear(h, bias=False), BatchNorm1d, ReLU] -> Linear(1)`` scores all B x B pairs
``S[i, j] = T(a_i, b_j)``; the diagonal holds joint samples, the off-diagonal marginal ones, and

    MI = mean_i S[i, i] - mean_j (logsumexp_{i != j} S[i, j] - log(B - 1))      (DV bound, eq. 2)

BatchNorm over pairs: all B*B pairs go through the network in one pass, so joint and marginal
pairs are normalised with the same batch statistics (scoring them in two passes would give each
set its own statistics, a difference ``T`` can exploit instead of the dependence). The first
layer is applied as ``W_a a_i + W_b b_j`` (B + B rows, then a broadcast sum), which is exactly
``W [a_i; b_j]`` without materialising the B*B concatenations.

Conditional marginal (our choice, option): with ``groups`` (e.g. the class labels ``y``) the
marginal term only uses off-diagonal pairs ``(i, j)`` with ``groups[i] == groups[j]``, i.e. samples
of the product of the conditionals ``p(a | g) p(b | g)``; the bound then estimates
``I(A; B | G)`` instead of ``I(A; B)``. Columns whose group has no other member are left out.

Bias correction (sec. 3.2 of the paper, optional): the gradient of the marginal term
``log mean exp T`` is biased on a mini-batch; with ``ema_alpha`` set, training uses
``grad(mean exp T) / EMA(mean exp T)`` instead (moving average with rate ``ema_alpha``, kept in
log space). Only the maximisation step uses it; the value returned by ``lower_bound`` and the
penalty that flows into an encoder are the plain bound above.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class MINE(nn.Module):
    """Statistics network ``T(a, b)`` with the DV bound over all pairs of a batch."""

    def __init__(
        self,
        dim_a: int,
        dim_b: int,
        hidden: int = 400,
        layers: int = 3,
        ema_alpha: float | None = None,
        batch_norm: bool = True,
    ):
        super().__init__()
        if layers < 1:
            raise ValueError("MINE needs at least one hidden layer")
        # without batch norm (the constrained critics) the linear layers carry the biases
        self.in_a = nn.Linear(dim_a, hidden, bias=not batch_norm)
        self.in_b = nn.Linear(dim_b, hidden, bias=False)

        def norm() -> nn.Module:
            return nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()

        body: list[nn.Module] = [norm(), nn.ReLU()]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden, bias=not batch_norm), norm(), nn.ReLU()]
        body.append(nn.Linear(hidden, 1))
        self.body = nn.Sequential(*body)
        self.ema_alpha = ema_alpha
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def scores(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``S[i, j] = T(a_i, b_j)`` for all pairs, shape (B, B)."""
        n = a.shape[0]
        if b.shape[0] != n:
            raise ValueError(f"a and b need the same batch size, got {n} and {b.shape[0]}")
        if n < 2:
            raise ValueError("MINE needs a batch of at least 2 (joint and marginal pairs)")
        h = self.in_a(a.flatten(1)).unsqueeze(1) + self.in_b(b.flatten(1)).unsqueeze(0)
        return self.body(h.reshape(n * n, -1)).reshape(n, n)

    @staticmethod
    def _terms(
        s: torch.Tensor, groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint term and per-column ``log mean_{i != j} exp S[i, j]`` (B,).

        With ``groups``, only pairs with ``groups[i] == groups[j]`` enter column ``j``'s marginal
        term, and the columns without such a pair are dropped (joint term over the rest).
        """
        s = s.float()  # logsumexp in float32 also under bf16 autocast
        n = s.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=s.device)
        if groups is None:
            joint = s.diagonal().mean()
            log_marg = torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=0) - math.log(n - 1)
            return joint, log_marg
        g = groups.reshape(-1)
        if g.shape[0] != n:
            raise ValueError(f"groups needs {n} entries, got {g.shape[0]}")
        allowed = (g.unsqueeze(1) == g.unsqueeze(0)) & ~eye
        count = allowed.sum(0)
        keep = count > 0
        if not bool(keep.any()):
            raise ValueError("conditional MINE needs two samples of one group in the batch")
        log_marg = torch.logsumexp(s.masked_fill(~allowed, float("-inf")), dim=0)
        log_marg = log_marg[keep] - count[keep].float().log()
        joint = s.diagonal()[keep].mean()
        return joint, log_marg

    def lower_bound(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The DV estimate of I(A; B) (of I(A; B | G) with ``groups``) in nats on this batch."""
        joint, log_marg = self._terms(self.scores(a, b), groups)
        return joint - log_marg.mean()

    def training_objective(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """Surrogate to *maximise* when training T, and the bound's value as a float.

        Without ``ema_alpha`` it is the bound itself. With it, the marginal term's gradient is
        replaced by ``grad(m) / EMA(m)`` with ``m = mean_{i != j} exp S[i, j]`` (paper sec. 3.2).
        """
        joint, log_marg = self._terms(self.scores(a, b), groups)
        bound = joint - log_marg.mean()
        if self.ema_alpha is None:
            return bound, bound.item()
        log_m = torch.logsumexp(log_marg, 0) - math.log(log_marg.numel())  # log mean_j m_j
        with torch.no_grad():
            if torch.isnan(self.log_ema):
                self.log_ema.copy_(log_m)
            else:
                alpha = self.ema_alpha
                self.log_ema.copy_(
                    torch.logaddexp(self.log_ema + math.log(1 - alpha), log_m + math.log(alpha))
                )
        # value of the plain bound, gradient m'/EMA(m) for the marginal term
        ratio = torch.exp(log_m - self.log_ema)
        surrogate = joint - (ratio - ratio.detach()) - log_marg.mean().detach()
        return surrogate, bound.item()

    def maximise_step(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        groups: torch.Tensor | None = None,
    ) -> float:
        """One gradient step of T on detached samples; returns the bound before the step."""
        objective, value = self.training_objective(a.detach(), b.detach(), groups)
        optimizer.zero_grad(set_to_none=True)
        (-objective).backward()
        optimizer.step()
        return value


def fit_mine(
    mine: MINE,
    sample: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
) -> list[float]:
    """Train ``mine`` on ``steps`` fresh batches from ``sample(batch_size) -> (a, b)``.

    Returns the per-step bound values. Adam, as the paper; lr 1e-3 converges in a few hundred
    steps on low-dimensional problems (the MIMM papers use 1e-5 alongside an encoder).
    """
    optimizer = torch.optim.Adam(mine.parameters(), lr=lr)
    mine.train()
    return [mine.maximise_step(*sample(batch_size), optimizer) for _ in range(steps)]


@torch.no_grad()
def estimate_mi(
    mine: MINE,
    sample: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    batches: int = 20,
    batch_size: int = 256,
) -> float:
    """Average bound over fresh batches with T frozen (BatchNorm on its running statistics)."""
    was_training = mine.training
    mine.eval()
    values = [mine.lower_bound(*sample(batch_size)).item() for _ in range(batches)]
    mine.train(was_training)
    return sum(values) / len(values)
