"""MINE on correlated Gaussians with a known mutual information.

For ``b = rho a + sqrt(1 - rho^2) e`` per coordinate, ``I(a; b) = -d/2 log(1 - rho^2)``.
Settings that converge in a fast test (our choice, not the MIMM papers' lr 1e-5, which is for
training next to an encoder): Adam lr 1e-3, 500 steps of B = 64 (4,096 pairs), hidden width 64
instead of 400 (the architecture is otherwise the one of methods.md), EMA bias correction on.
The estimate is the bound averaged over 10 fresh batches of 256 with T frozen.

Not tested: MI well above log(B), e.g. 8 pairs at rho 0.8 / 0.9 (4.1 / 6.6 nats). There a critic
can separate every joint pair of a batch from its B - 1 marginal pairs, the finite-batch DV bound
has no maximum and the estimate diverges (at B = 128 it ran past 40 and 200 nats; at B = 256 the
4.1-nat case read 5.4 and was still rising); this is
the known limit of batch lower bounds (McAllester & Stratos, AISTATS 2020), not a bug here.
"""

from __future__ import annotations

import math

import pytest
import torch

from shortcutlab.estimators.mine import MINE, estimate_mi, fit_mine

pytestmark = pytest.mark.usefixtures("one_thread")


def _sampler(rho: float, dim: int, seed: int):
    gen = torch.Generator().manual_seed(seed)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randn(n, dim, generator=gen)
        b = rho * a + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=gen)
        return a, b

    return sample


def _trained_estimate(rho: float, dim: int) -> float:
    torch.manual_seed(0)
    mine = MINE(dim, dim, hidden=64, ema_alpha=0.1)
    fit_mine(mine, _sampler(rho, dim, seed=1), steps=500, batch_size=64, lr=1e-3)
    return estimate_mi(mine, _sampler(rho, dim, seed=2), batches=10, batch_size=256)


@pytest.mark.parametrize("dim,rho", [(1, 0.5), (1, 0.8), (1, 0.9), (8, 0.5)])
def test_recovers_known_mi(dim: int, rho: float) -> None:
    truth = -0.5 * dim * math.log(1 - rho**2)
    estimate = _trained_estimate(rho, dim)
    assert abs(estimate - truth) <= 0.15 * truth, (estimate, truth)


@pytest.mark.parametrize("dim", [1, 8])
def test_independent_is_near_zero(dim: int) -> None:
    assert abs(_trained_estimate(0.0, dim)) < 0.05


def test_scores_are_t_on_concatenated_pairs() -> None:
    """The factorised first layer equals ``T([a_i; b_j])`` with one BatchNorm pass over pairs."""
    torch.manual_seed(0)
    mine = MINE(3, 2, hidden=16)
    a, b = torch.randn(5, 3), torch.randn(5, 2)
    s = mine.scores(a, b)
    pairs = torch.cat([a.repeat_interleave(5, 0), b.repeat(5, 1)], dim=1)  # row i*5+j
    weight = torch.cat([mine.in_a.weight, mine.in_b.weight], dim=1)
    direct = mine.body(pairs @ weight.T).reshape(5, 5)
    torch.testing.assert_close(s, direct)

    joint = s.diagonal().mean()
    off = s.masked_fill(torch.eye(5, dtype=torch.bool), float("-inf"))
    marg = (torch.logsumexp(off, 0) - math.log(4)).mean()
    torch.testing.assert_close(mine.lower_bound(a, b), joint - marg)


def test_ema_surrogate_has_the_bound_value_and_a_gradient() -> None:
    torch.manual_seed(0)
    mine = MINE(2, 2, hidden=16, ema_alpha=0.1)
    a = torch.randn(16, 2)
    b = a + 0.1 * torch.randn(16, 2)
    surrogate, value = mine.training_objective(a, b)
    assert abs(surrogate.item() - value) < 1e-5
    surrogate.backward()
    assert all(torch.isfinite(p.grad).all() for p in mine.parameters() if p.grad is not None)
    assert torch.isfinite(mine.log_ema)


def test_bound_backpropagates_into_inputs() -> None:
    mine = MINE(4, 4, hidden=16)
    a = torch.randn(8, 4, requires_grad=True)
    b = torch.randn(8, 4, requires_grad=True)
    mine.lower_bound(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


def test_conditional_marginal_uses_only_same_group_pairs() -> None:
    """With ``groups`` each column's marginal term is over ``i != j`` of the same group only."""
    torch.manual_seed(0)
    mine = MINE(3, 2, hidden=16)
    a, b = torch.randn(6, 3), torch.randn(6, 2)
    g = torch.tensor([0, 0, 1, 1, 1, 2])  # the lone group-2 column has no marginal pair
    s = mine.scores(a, b)
    cols = []
    for j in range(5):
        rows = [i for i in range(6) if i != j and g[i] == g[j]]
        cols.append(torch.logsumexp(s[rows, j], 0) - math.log(len(rows)))
    expected = s.diagonal()[:5].mean() - torch.stack(cols).mean()
    torch.testing.assert_close(mine.lower_bound(a, b, g), expected)
    assert not torch.allclose(mine.lower_bound(a, b, g), mine.lower_bound(a, b))
    with pytest.raises(ValueError, match="two samples of one group"):
        mine.lower_bound(a, b, torch.arange(6))


def test_conditional_bound_removes_the_shared_class() -> None:
    """a and b both copy a class g (independent given g): I(a; b) ~ log 2, I(a; b | g) ~ 0."""
    torch.manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.randint(0, 2, (n,))
        a = g[:, None].float() * 3 + torch.randn(n, 1)
        b = g[:, None].float() * 3 + torch.randn(n, 1)
        return a, b, g

    values = {}
    for conditional in (False, True):
        torch.manual_seed(1)
        mine = MINE(1, 1, hidden=32)
        opt = torch.optim.Adam(mine.parameters(), lr=1e-3)
        for _ in range(300):
            a, b, g = sample(128)
            mine.maximise_step(a, b, opt, g if conditional else None)
        mine.eval()
        with torch.no_grad():
            est = []
            for _ in range(10):
                a, b, g = sample(256)
                est.append(mine.lower_bound(a, b, g if conditional else None).item())
        values[conditional] = sum(est) / len(est)
    assert values[False] > 0.4  # I(a; b) is close to log 2 = 0.69 here
    assert abs(values[True]) < 0.05
