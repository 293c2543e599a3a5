"""Honest MI accounting (docs/methods.md, "Honest MI accounting"): a *fresh* statistics network
trained on frozen features, scored on held-out ones.

The critic that trains beside an encoder reports how far it has got, not the mutual information
of the blocks: between two deterministic slices of one encoder the MI is unbounded, and a critic
that lags the encoder reports a fraction of a nat while a fresh one finds tens. After training
(and cheaply per epoch) the split methods train a new ``MINE`` of the same form for ``steps``
Adam steps on mini-batches of the *train* features (frozen), then average the DV bound over
batches of the *held-out* (val) features with the critic frozen; both blocks are standardised
with the train statistics. A DV bound on held-out data stays a lower bound on the MI in
expectation, so a large value is real dependence, not an overfitted critic.

``noise_sigma`` (the stochastic encoder, ``stochastic_sigma``): Gaussian noise of that scale is
added to the raw features before standardising, so the critic sees the noisy channel that the
penalty saw in training rather than its noise-free mean.
"""

from __future__ import annotations

import numpy as np
import torch

from shortcutlab.estimators.mine import MINE


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return t.reshape(t.shape[0], -1)


def fresh_critic_mi(
    train_a: np.ndarray | torch.Tensor,
    train_b: np.ndarray | torch.Tensor,
    eval_a: np.ndarray | torch.Tensor,
    eval_b: np.ndarray | torch.Tensor,
    steps: int = 300,
    hidden: int = 128,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    noise_sigma: float = 0.0,
    eval_batches: int = 8,
) -> float:
    """The DV estimate (nats) of I(A; B) on ``eval_*`` by a new critic fitted on ``train_*``.

    Rows of ``train_a`` / ``train_b`` (and of the eval pair) are joint samples. A constant block
    gives 0 (there is nothing to depend on). Runs in float32 on the CPU, seeded.
    """
    ta, tb, ea, eb = (_as_tensor(x) for x in (train_a, train_b, eval_a, eval_b))
    if ta.shape[0] != tb.shape[0] or ea.shape[0] != eb.shape[0]:
        raise ValueError("a and b need the same number of rows")
    gen = torch.Generator().manual_seed(seed)
    if noise_sigma > 0:
        ta, tb, ea, eb = (
            x + noise_sigma * torch.randn(x.shape, generator=gen) for x in (ta, tb, ea, eb)
        )
    sa, sb = ta.std(0), tb.std(0)
    if float(sa.max()) < 1e-8 or float(sb.max()) < 1e-8:
        return 0.0
    ma, mb = ta.mean(0), tb.mean(0)
    sa, sb = sa.clamp_min(1e-6), sb.clamp_min(1e-6)
    ta, ea = (ta - ma) / sa, (ea - ma) / sa
    tb, eb = (tb - mb) / sb, (eb - mb) / sb
    n_train, n_eval = ta.shape[0], ea.shape[0]
    bs_train, bs_eval = min(batch_size, n_train), min(batch_size, n_eval)
    if bs_train < 2 or bs_eval < 2:
        raise ValueError("the fresh critic needs at least 2 rows in each split")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = MINE(ta.shape[1], tb.shape[1], hidden)
        opt = torch.optim.Adam(critic.parameters(), lr=lr)
        critic.train()
        with torch.enable_grad():
            for _ in range(steps):
                i = torch.randperm(n_train, generator=gen)[:bs_train]
                critic.maximise_step(ta[i], tb[i], opt)
        critic.eval()
        values = []
        with torch.no_grad():
            for _ in range(eval_batches):
                i = torch.randperm(n_eval, generator=gen)[:bs_eval]
                values.append(critic.lower_bound(ea[i], eb[i]).item())
    return float(np.mean(values))
