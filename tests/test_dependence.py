"""Honest MI accounting and the bounded dependence penalties (docs/methods.md, "Honest MI
accounting" and "Bounded dependence penalties"): the fresh critic, InfoNCE, the constrained
critics, gradient reversal, the stochastic encoder and the split methods' wiring of them.

Small settings (our choice) so that each test takes seconds: critics of width 32-64, a few
hundred steps of batches of 64-128.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.estimators.adversary import ZAdversary, entropy_nats, grad_reverse
from shortcutlab.estimators.constrained_critic import GradientPenaltyMINE, SpectralMINE
from shortcutlab.estimators.fresh_critic import fresh_critic_mi
from shortcutlab.estimators.infonce import InfoNCE
from shortcutlab.estimators.mine import MINE
from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.methods.feature_split import StochasticFeatures
from shortcutlab.models import EncoderHeadModel

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussians(n: int, dim: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=g)
    return a, rho * a + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=g)


# -- the fresh critic ------------------------------------------------------------------------------
def test_fresh_critic_recovers_known_mi_of_correlated_gaussians():
    """I = -d/2 log(1 - rho^2): 1.02 nats for d = 2, rho = 0.8; 0 for independent blocks."""
    truth = -1.0 * math.log(1 - 0.8**2)
    a, b = gaussians(3000, 2, 0.8, 0)
    va, vb = gaussians(1000, 2, 0.8, 1)
    est = fresh_critic_mi(a, b, va, vb, steps=200, hidden=32, batch_size=64)
    assert abs(est - truth) < 0.15 * truth, (est, truth)
    a, b = gaussians(3000, 2, 0.0, 2)
    va, vb = gaussians(1000, 2, 0.0, 3)
    assert abs(fresh_critic_mi(a, b, va, vb, steps=200, hidden=32, batch_size=64)) < 0.1


def test_fresh_critic_reports_two_copies_of_one_feature_as_large_and_noise_bounds_it():
    """Two copies (unbounded MI) read far above any batch-bounded value; the same copies through
    the stochastic encoder's noise (sigma 1 on both) are a Gaussian channel of
    d * 0.5 log((1 + s^2)^2 / (s^2 (2 + s^2))) = 4 * 0.144 = 0.58 nats."""
    g = torch.Generator().manual_seed(0)
    x, vx = torch.randn(3000, 4, generator=g), torch.randn(1000, 4, generator=g)
    copies = fresh_critic_mi(x, x.clone(), vx, vx.clone(), steps=200, hidden=32, batch_size=64)
    assert copies > 20.0, copies
    noisy = fresh_critic_mi(
        x, x.clone(), vx, vx.clone(), steps=200, hidden=32, batch_size=64, noise_sigma=1.0
    )
    assert 0.3 < noisy < 0.9, noisy
    const = fresh_critic_mi(x, torch.zeros(3000, 2), vx, torch.zeros(1000, 2), steps=5)
    assert const == 0.0


# -- InfoNCE ---------------------------------------------------------------------------------------
def test_infonce_never_exceeds_log_batch_and_saturates_on_copies():
    torch.manual_seed(0)
    critic = InfoNCE(4, 4, 32)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    values = []
    for _ in range(150):
        x = torch.randn(64, 4, generator=g)
        values.append(critic.maximise_step(x, x.clone(), opt))
    assert max(values) <= math.log(64) + 1e-5
    assert values[-1] > math.log(64) - 0.5, values[-1]  # MINE's DV bound runs far past log B
    # conditional: at most log of the group's size, here two groups of 32
    x = torch.randn(64, 4, generator=g)
    groups = torch.arange(64) % 2
    assert critic.lower_bound(x, x.clone(), groups).item() <= math.log(32) + 1e-5


# -- constrained critics --------------------------------------------------------------------------
def _train_on_copies(critic: MINE, steps: int = 150) -> MINE:
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(64, 3, generator=g)
        critic.maximise_step(x, x.clone(), opt)
    return critic.eval()


@torch.no_grad()
def _max_slope(critic: MINE) -> float:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(512, 3, generator=g), torch.randn(512, 3, generator=g)
    da, db = 0.1 * torch.randn(512, 3, generator=g), 0.1 * torch.randn(512, 3, generator=g)
    t0 = critic.body(critic.in_a(a) + critic.in_b(b)).squeeze(1)
    t1 = critic.body(critic.in_a(a + da) + critic.in_b(b + db)).squeeze(1)
    return float(((t1 - t0).abs() / torch.cat([da, db], 1).norm(dim=1)).max())


def test_spectral_critic_is_lipschitz_where_an_unconstrained_one_is_not():
    torch.manual_seed(0)
    constrained = _train_on_copies(SpectralMINE(3, 3, 32))
    torch.manual_seed(0)
    free = _train_on_copies(MINE(3, 3, 32, batch_norm=False))
    assert _max_slope(constrained) <= math.sqrt(2) * 1.02
    assert _max_slope(free) > 2 * math.sqrt(2)


def test_gradient_penalty_flattens_the_critic():
    slopes = {}
    for w in (0.0, 10.0):
        torch.manual_seed(0)
        critic = _train_on_copies(GradientPenaltyMINE(3, 3, 32, gp_weight=w), steps=100)
        x = torch.randn(128, 3, generator=torch.Generator().manual_seed(2))
        slopes[w] = critic.joint_slope(x, x.clone()).item()
    assert slopes[10.0] < 0.5 * slopes[0.0], slopes


# -- gradient reversal and the adversary -----------------------------------------------------------
def test_gradient_reversal_flips_and_scales_the_gradient_only():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    out = grad_reverse(x, 2.0)
    assert torch.equal(out, x)
    (out * w).sum().backward()
    assert torch.allclose(x.grad, -2.0 * w)


def test_adversary_given_y_takes_y_and_entropy_is_in_nats():
    adv = ZAdversary(4, [2, 3], hidden=8, num_classes=2)
    f, y, z = torch.randn(10, 4), torch.randint(0, 2, (10,)), torch.randint(0, 2, (10, 2))
    assert [lo.shape for lo in adv(f, y)] == [(10, 2), (10, 3)]
    assert len(adv.losses(f, z, y)) == 2
    with pytest.raises(ValueError, match="conditions on y"):
        adv(f)
    assert entropy_nats(torch.tensor([0, 1, 0, 1]), 2) == pytest.approx(math.log(2))


# -- the split methods ----------------------------------------------------------------------------
INFO = TaskInfo(2, ["a1", "a2"], [2, 2], epochs=2, steps_per_epoch=10)


def build(name: str, encoder: nn.Module | None = None, **hp):
    cls = get_method(name)
    hparams = {**cls.hparam_defaults(), "f_y_dim": 4, "f_z_dim": 2, "mine_hidden": 16, **hp}
    dim = cls.encoder_dim(INFO, hparams)
    torch.manual_seed(0)
    if encoder is None:
        encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, dim), nn.ReLU())
    return cls(EncoderHeadModel(encoder, nn.Linear(dim, 2), dim), INFO, hparams)


def toy_batch(n: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    z = torch.randint(0, 2, (n, 2), generator=g)
    return {"x": torch.randn(n, 8, generator=g), "y": y, "z": z, "g": y, "idx": torch.arange(n)}


def test_split_methods_drop_the_final_relu_unless_asked():
    for name in ("dcor", "mimm", "mimmx", "zadv"):
        assert not isinstance(build(name).model.encoder[-1], nn.ReLU)
        assert isinstance(build(name, final_relu=True).model.encoder[-1], nn.ReLU)
    f = build("mimmx").model.features(torch.randn(64, 8))
    assert (f < 0).any()  # no ReLU: negative features exist


def test_stochastic_encoder_is_noisy_in_training_and_its_mean_in_evaluation():
    layer = StochasticFeatures(0.5)
    mu = torch.randn(2000, 3)
    noisy = layer.train()(mu)
    assert (noisy - torch.tanh(mu)).std().item() == pytest.approx(0.5, rel=0.1)
    assert torch.equal(layer.eval()(mu), torch.tanh(mu))
    method = build("mimmx", stochastic_sigma=0.5)
    assert isinstance(method.model.encoder[-1], StochasticFeatures)
    method.train()
    x = torch.randn(4, 8)
    assert not torch.equal(method.model.features(x), method.model.features(x))
    method.eval()
    assert torch.equal(method.model.features(x), method.model.features(x))
    assert method.model.features(x).abs().max() <= 1.0
    with pytest.raises(ShortcutlabError, match="stochastic_sigma"):
        build("mimm", stochastic_sigma=-1.0)


@pytest.mark.parametrize("critic", ["infonce", "spectral", "gradient_penalty"])
def test_mimmx_trains_with_each_bounded_critic(critic):
    method = build("mimmx", critic=critic, n_b=2)
    logs = [method.update(toy_batch(seed=s)) for s in range(3)]
    assert all(math.isfinite(v) for log in logs for v in log.values())
    if critic == "infonce":
        assert all(log["mi"] <= math.log(32) + 1e-5 for log in logs)


def test_unknown_critic_is_a_one_sentence_error():
    with pytest.raises(ShortcutlabError, match="critic must be one of"):
        build("mimm", critic="nope")


class _Context:
    """What ``critic_batches: fresh`` reads from the runner's context: train, seed, batches."""

    def __init__(self):
        self.train = toy_batch(256, seed=9)
        self.seed = 0
        self.drawn = 0

    def batches(self, tensors, shuffle=True, generator=None, **_):
        perm = torch.randperm(len(tensors["y"]), generator=generator)
        for i in range(0, len(perm), 32):
            self.drawn += 1
            yield {k: v[perm[i : i + 32]] for k, v in tensors.items()}


@pytest.mark.parametrize("name", ["mimm", "mimmx"])
def test_fresh_critic_batches_draw_n_b_minus_1_new_batches_per_update(name):
    method = build(name, critic_batches="fresh", n_b=4)
    ctx = _Context()
    method.on_train_start(ctx)
    method.update(toy_batch())
    assert ctx.drawn == 3
    same = build(name, n_b=4)
    same.on_train_start(ctx)
    same.update(toy_batch())
    assert ctx.drawn == 3  # the default reuses the batch


def test_dependence_rows_report_copied_blocks_large_and_separate_blocks_small():
    """An encoder whose f_a1 block copies part of f_y (two copies of one feature) against one
    whose blocks read disjoint, independent inputs."""

    class Copy(nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :4], x[:, :2], x[:, 4:6]], 1)

    class Apart(nn.Module):
        def forward(self, x):
            return torch.cat([x[:, :4], x[:, 4:8]], 1)

    g = torch.Generator().manual_seed(0)
    feats = {}
    for label, enc in (("copy", Copy()), ("apart", Apart())):
        method = build("mimm", encoder=enc, audit_steps=200, audit_hidden=32, final_relu=True)
        method.eval()
        feats = {
            s: {k: v.numpy() for k, v in method.features(torch.randn(n, 8, generator=g)).items()}
            for s, n in (("train", 1500), ("val", 500))
        }
        rows = method.dependence_rows(feats, seed=0)
        fresh = {r["target"]: r["value"] for r in rows if r["metric"] == "mi_fresh_critic"}
        trained = [r for r in rows if r["metric"] == "mi_training_critic"]
        assert set(fresh) == {"a1"} and len(trained) == 1
        if label == "copy":
            assert fresh["a1"] > 10.0, fresh
        else:
            assert abs(fresh["a1"]) < 0.15, fresh
    assert build("mimm", audit_steps=0).dependence_rows(feats) == []


def test_dcor_reports_its_penalty_and_mimmx_its_concat_critic():
    g = np.random.default_rng(0)
    blocks = {"f_y": g.normal(size=(300, 4)), "f_a1": g.normal(size=(300, 2))}
    blocks["f_a2"] = blocks["f_y"][:, :2]
    (row,) = build("dcor").penalty_rows(blocks, seed=0)
    assert row["metric"] == "dcor_penalty" and row["value"] > 0.3
    rows = build("mimmx").penalty_rows(blocks, seed=0)
    assert [r["target"] for r in rows] == ["all"]
    rows = build("mimmx", caw_mode="pairwise").penalty_rows(blocks, seed=0)
    assert [r["target"] for r in rows] == ["a1", "a2"]


def test_report_plots_fresh_and_training_critic_side_by_side():
    import pandas as pd

    from shortcutlab.report.figures import mi_figure

    rows = [
        {"method": "mimm", "seed": 0, "split": "val", "target": "a1", "metric": m, "value": v}
        for m, v in (("mi_fresh_critic", 40.0), ("mi_training_critic", 0.5))
    ]
    fig = mi_figure(pd.DataFrame(rows), ["erm", "mimm"], {"mimm": "#1f77b4"})
    assert fig is not None
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [0.5, 40.0]
    assert mi_figure(pd.DataFrame(rows).assign(metric="accuracy"), ["mimm"], {}) is None


def test_confusion_target_is_the_class_conditional_prior():
    from shortcutlab.estimators.adversary import prior_given, soft_cross_entropy

    y = torch.tensor([0, 0, 0, 1, 1, 1])
    z = torch.tensor([0, 0, 1, 1, 1, 1])
    p = prior_given(z, y, 2)
    assert torch.allclose(p[0], torch.tensor([3 / 5, 2 / 5]))  # (2 + 1, 1 + 1) / 5
    assert torch.allclose(p[3], torch.tensor([1 / 5, 4 / 5]))
    # minimal where the prediction is the target
    at_target = soft_cross_entropy(p.log(), p)
    assert at_target < soft_cross_entropy(torch.zeros(6, 2), p)
    assert at_target < soft_cross_entropy(5 * (2 * F.one_hot(z, 2).float() - 1), p)


@pytest.mark.parametrize("mode", ["confusion", "reverse"])
def test_zadv_trains_without_moving_the_adversary_through_the_main_step(mode):
    method = build("zadv", adv_mode=mode)
    before = [p.detach().clone() for p in method.adversary.parameters()]
    assert not {id(p) for p in method.adversary.parameters()} & {
        id(p) for g in method.optimizer.param_groups for p in g["params"]
    }
    log = method.update(toy_batch())
    assert math.isfinite(log["adv_ce_a1"])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.adversary.parameters()))


@pytest.mark.parametrize("hp", [{}, {"stochastic_sigma": 0.5}])
def test_a_split_checkpoint_reloads_with_the_same_encoder_end(tmp_path, hp):
    from shortcutlab.models import build_model
    from shortcutlab.models.checkpoint import Checkpoint, load_trained_model

    info = TaskInfo(2, ["a1", "a2"], [2, 2], in_channels=1, image_size=16)
    cls = get_method("mimmx")
    hparams = {**cls.hparam_defaults(), "f_y_dim": 4, "f_z_dim": 2, "mine_hidden": 8, **hp}
    dim = cls.encoder_dim(info, hparams)
    torch.manual_seed(0)
    method = cls(build_model("small-cnn-gn", 1, 2, 16, dim), info, hparams)
    Checkpoint(
        method="mimmx",
        name="mimmx",
        hparams=hparams,
        model_state=method.model.state_dict(),
        method_state={},
        info={},
        feature_dim=dim,
        train={"backbone": "small-cnn-gn"},
        dataset={},
        seed=0,
        selected_epoch=0,
        selection={},
        compute={},
    ).save(tmp_path / "c.pt")
    loaded = load_trained_model(tmp_path / "c.pt", info).eval()
    x = torch.rand(8, 1, 16, 16)
    method.eval()
    assert torch.allclose(loaded(x), method.model(x), atol=1e-6)
    assert (method.model.features(x) < 0).any()  # the ReLU is gone in both
