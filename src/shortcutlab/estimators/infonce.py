"""InfoNCE (van den Oord et al. 2018): a lower bound on I(A; B) that cannot exceed log B.

docs/methods.md, "Bounded dependence penalties": the statistics network of ``estimators.mine``
scores all ``B x B`` pairs ``S[i, j] = T(a_i, b_j)``; for each column ``j`` the joint pair is
classified against the ``B`` candidates ``a_1..a_B``:

    I_NCE = mean_j ( S[j, j] - logsumexp_i S[i, j] ) + log B  <=  log B

The penalty is therefore bounded whatever the critic or the encoder do: two deterministic
blocks of one encoder, whose true MI is unbounded, price at most ``log B`` nats. With ``groups``
(``mi_given_y``) the candidates of column ``j`` are the rows of its own group (``j`` included),
``I_NCE = mean_j (S[j, j] - logsumexp_{i: g_i = g_j} S[i, j] + log n_{g_j})``, a bound on
``I(A; B | G)`` of at most the log of the group's size.
"""

from __future__ import annotations

import math

import torch

from shortcutlab.estimators.mine import MINE


class InfoNCE(MINE):
    """MINE's statistics network with the InfoNCE bound in place of the DV bound."""

    def lower_bound(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        s = self.scores(a, b).float()
        n = s.shape[0]
        if groups is None:
            return (s.diagonal() - torch.logsumexp(s, 0)).mean() + math.log(n)
        g = groups.reshape(-1)
        if g.shape[0] != n:
            raise ValueError(f"groups needs {n} entries, got {g.shape[0]}")
        same = g.unsqueeze(1) == g.unsqueeze(0)
        count = same.sum(0).float()
        keep = count > 1
        if not bool(keep.any()):
            raise ValueError("conditional InfoNCE needs two samples of one group in the batch")
        lse = torch.logsumexp(s.masked_fill(~same, float("-inf")), 0)
        return (s.diagonal() - lse + count.log())[keep].mean()

    def training_objective(
        self, a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        bound = self.lower_bound(a, b, groups)
        return bound, bound.item()
