"""dCor, MIMM and MIMM-X on a toy problem where y and the first attribute share a signal.

Toy: ``x`` in R^8 with ``x0 ~ y``, ``x1 ~ z1``, ``x2 ~ z2`` plus noise, ``P(z1 = y) = 0.9`` and
``z2`` independent of everything; a two-layer MLP encoder. Each penalised run is compared with the
same method at ``lambda = 0`` (heads only, same seed and batches). Small test settings
(our choice): statistics networks of width 64, N_B 3, MINE lr 1e-4, 200 updates of 64.
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from shortcutlab.estimators.dcor import distance_correlation
from shortcutlab.estimators.mine import MINE, estimate_mi, fit_mine
from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.methods.mimmx import dls_gammas
from shortcutlab.models import EncoderHeadModel

STEPS = 200
MINE_TEST = {"mine_hidden": 64, "n_b": 3, "mine_lr": 1e-4}


pytestmark = pytest.mark.usefixtures("one_thread")


def toy(n: int, seed: int, p_same: float = 0.9, y_signal: float = 1.0) -> dict[str, torch.Tensor]:
    """``P(z1 = y) = p_same`` (at 0.5, z1 is independent of y); ``x0 ~ y_signal * y``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    z1 = torch.where(torch.rand(n, generator=g) < p_same, y, 1 - y)
    z2 = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 8, generator=g) * 0.5
    x[:, 0] += y_signal * y
    x[:, 1] += z1
    x[:, 2] += z2
    return {
        "x": x,
        "y": y,
        "z": torch.stack([z1, z2], 1),
        "g": y * 4 + z1 * 2 + z2,
        "idx": torch.arange(n),
    }


def build(name: str, seed: int = 0, **hp):
    cls = get_method(name)
    info = TaskInfo(2, ["a1", "a2"], [2, 2], epochs=4, steps_per_epoch=50)
    hparams = {**cls.hparam_defaults(), **hp}
    dim = cls.encoder_dim(info, hparams)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, dim))
    return cls(EncoderHeadModel(encoder, nn.Linear(dim, 2), dim), info, hparams)


def train(
    method, steps: int = STEPS, batch_size: int = 64, seed: int = 0, **toy_kw
) -> list[dict[str, float]]:
    data = toy(2048, seed, **toy_kw)
    g = torch.Generator().manual_seed(seed)
    logs = []
    for _ in range(steps):
        i = torch.randint(0, 2048, (batch_size,), generator=g)
        logs.append(method.update({k: v[i] for k, v in data.items()}))
    return logs


def tail(logs: list[dict[str, float]], key: str, n: int = 20) -> float:
    return sum(entry[key] for entry in logs[-n:]) / n


@torch.no_grad()
def test_feature_dcor(method) -> float:
    method.eval()
    feats = method.features(toy(512, 1)["x"])
    return distance_correlation(feats["f_y"], feats["f_a1"]).item()


test_feature_dcor.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def mimmx_runs():
    with_mi = build("mimmx", **MINE_TEST)
    without = build("mimmx", **MINE_TEST, **{"lambda": 0.0})
    return (with_mi, train(with_mi)), (without, train(without))


def test_dcor_penalty_lowers_dcor() -> None:
    plain, penalised = build("dcor", **{"lambda": 0.0}), build("dcor", **{"lambda": 1.0})
    train(plain, 150), train(penalised, 150)
    d_plain, d_pen = test_feature_dcor(plain), test_feature_dcor(penalised)
    assert d_pen < d_plain - 0.2, (d_pen, d_plain)


def test_mimm_penalty_lowers_its_mi_estimate() -> None:
    plain, penalised = build("mimm", **MINE_TEST, **{"lambda": 0.0}), build("mimm", **MINE_TEST)
    logs_plain, logs_pen = train(plain), train(penalised)
    assert tail(logs_pen, "mi_mine_steps") < 0.5 * tail(logs_plain, "mi_mine_steps")
    # the independent measure must not get worse
    assert test_feature_dcor(penalised) <= test_feature_dcor(plain) + 0.02


def test_mimmx_penalty_lowers_its_mi_estimate(mimmx_runs) -> None:
    (with_mi, logs), (without, logs_plain) = mimmx_runs
    assert tail(logs, "mi_mine_steps") < 0.5 * tail(logs_plain, "mi_mine_steps")
    assert test_feature_dcor(with_mi) <= test_feature_dcor(without) + 0.02


# The checks above read the method's own critic, which trains alongside the encoder that
# minimises it (the encoder can learn to fool it). Independent checks after training, on frozen
# features, each against the same method at lambda 0 (same seed, architecture and batches):
# - a fresh MINE critic, fitted from scratch on (f_y, f_a1) of new data from the training
#   distribution, estimates I(f_y; f_a1);
# - a logistic-regression probe reads z1 from f_y on data where z1 is independent of y (at
#   P(z1 = y) = 0.9 a probe would read z1 through y).
# Settings for a clear effect in 100 small steps: blocks of size 2 (f_y has no spare dimensions
# for z-information the task head does not use), a weak y signal (x0 = 0.6 y + noise, so that
# without the penalty f_y leans on the z1 shortcut), a critic at lr 1e-3 that the encoder cannot
# outrun, and gradient clipping so that the penalised encoder keeps the task (without it the
# task is lost, a trivial way to lower the MI).
INDEPENDENT = {
    "f_y_dim": 2,
    "f_z_dim": 2,
    "mine_hidden": 64,
    "n_b": 3,
    "mine_lr": 1e-3,
    "mi_grad_clip": True,
}
WEAK_Y = 0.6


@torch.no_grad()
def frozen_blocks(method, data: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    method.eval()
    feats = method.features(data["x"])
    return feats["f_y"], feats["f_a1"]


def fresh_critic_mi(f_y: torch.Tensor, f_z: torch.Tensor) -> float:
    """I(f_y; f_z) by a MINE critic trained from scratch on the frozen blocks."""
    torch.manual_seed(0)
    critic = MINE(f_y.shape[1], f_z.shape[1], hidden=64)
    g = torch.Generator().manual_seed(0)

    def sample(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, len(f_y), (b,), generator=g)
        return f_y[i], f_z[i]

    fit_mine(critic, sample, steps=100, batch_size=64, lr=1e-3)
    return estimate_mi(critic, sample, batches=4, batch_size=256)


def probe_accuracy(method, target: str) -> float:
    """Held-out accuracy of a linear probe f_y -> target on data with z1 independent of y."""
    fit, test = (toy(1024, seed, p_same=0.5, y_signal=WEAK_Y) for seed in (2, 3))
    label = {"y": lambda d: d["y"], "z1": lambda d: d["z"][:, 0]}[target]
    probe = LogisticRegression(max_iter=1000)
    probe.fit(frozen_blocks(method, fit)[0].numpy(), label(fit).numpy())
    return probe.score(frozen_blocks(method, test)[0].numpy(), label(test).numpy())


@pytest.mark.parametrize("name", ["mimm", "mimmx"])
def test_penalty_lowers_mi_for_a_fresh_critic_and_a_linear_probe(name: str) -> None:
    plain = build(name, **INDEPENDENT, **{"lambda": 0.0})
    penalised = build(name, **INDEPENDENT, **{"lambda": 1.5})
    for method in (plain, penalised):
        train(method, 100, batch_size=32, y_signal=WEAK_Y)
    held_out = toy(1024, 1, y_signal=WEAK_Y)
    mi_plain = fresh_critic_mi(*frozen_blocks(plain, held_out))
    mi_pen = fresh_critic_mi(*frozen_blocks(penalised, held_out))
    assert mi_pen < 0.5 * mi_plain, (mi_pen, mi_plain)
    z_plain, z_pen = probe_accuracy(plain, "z1"), probe_accuracy(penalised, "z1")
    assert z_pen < z_plain - 0.02, (z_pen, z_plain)
    # not by emptying f_y: it still carries y where z1 is no help (chance 0.5, x0 alone ~0.73)
    assert probe_accuracy(penalised, "y") > 0.55


def test_caw_attends_to_the_informative_confounder(mimmx_runs) -> None:
    (method, _), (plain, _) = mimmx_runs
    a = method.attention().detach()
    assert abs(a.sum().item() - 1.0) < 1e-6 and (a > 0).all()
    assert a[0] > 0.6 > a[1], a  # z1 shares the signal of y, z2 is independent
    # with lambda 0 the MI term has no gradient: attention stays uniform
    torch.testing.assert_close(plain.attention().detach(), torch.full((2,), 0.5))


def test_caw_pairwise_mode_attends_to_the_informative_confounder() -> None:
    method = build("mimmx", **MINE_TEST, caw_mode="pairwise")
    train(method, 150)
    a = method.attention().detach()
    assert a[0] > a[1], a


def test_dls_gammas_follow_the_formula_and_the_alpha_schedule() -> None:
    method = build("mimmx", alpha_y=0.3, alpha_z=0.8, beta_y=0.5)
    losses = [0.2, 0.9, 0.4]
    mean = sum(losses) / 3
    for epoch in range(method.info.epochs + 1):
        alpha_y = 0.3 + epoch / method.info.epochs * 0.5
        assert method.alpha_y() == pytest.approx(alpha_y)
        expected = [(0.2 / mean) ** alpha_y, (0.9 / mean) ** 0.8, (0.4 / mean) ** 0.8]
        assert method.gammas(losses) == pytest.approx(expected)
        method.on_epoch_end(epoch, None)  # the runner's hook after 0-based epoch
    assert dls_gammas([1.0, 1.0], [0.3, 0.8]) == [1.0, 1.0]
    assert dls_gammas([0.0, 0.0], [0.3, 0.8]) == [1.0, 1.0]


def test_dls_off_gives_unit_gammas() -> None:
    method = build("mimmx", dls=False)
    assert method.gammas([0.2, 0.9, 0.4]) == [1.0, 1.0, 1.0]
    logs = train(method, 2)
    assert logs[-1]["gamma_y"] == logs[-1]["gamma_a1"] == logs[-1]["gamma_a2"] == 1.0


def test_caw_off_keeps_uniform_attention() -> None:
    method = build("mimmx", caw=False, **MINE_TEST)
    train(method, 5)
    torch.testing.assert_close(method.attention().detach(), torch.full((2,), 0.5))


@pytest.mark.parametrize(
    "name,hp",
    [
        ("dcor", {}),
        ("mimm", {"mine_hidden": 32}),
        ("mimmx", {"mine_hidden": 32}),
        ("mimmx", {"mine_hidden": 32, "caw_mode": "pairwise", "mine_ema_alpha": 0.1}),
        ("mimm", {"mine_hidden": 32, "mi_given_y": True}),
        ("mimmx", {"mine_hidden": 32, "caw_mode": "pairwise", "mi_given_y": True}),
    ],
)
def test_update_is_finite_and_changes_parameters(name: str, hp: dict) -> None:
    method = build(name, **hp)
    before = {k: v.detach().clone() for k, v in method.named_parameters()}
    logs = train(method, 3)
    assert all(math.isfinite(v) for entry in logs for v in entry.values())
    after = dict(method.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k].detach())}
    assert any(k.startswith("model.encoder") for k in changed)
    assert any(k.startswith("model.head") for k in changed)
    assert any(k.startswith("z_heads") for k in changed)
    if name != "dcor":
        assert any(k.startswith("mines") for k in changed)
    feats = method.features(toy(16, 2)["x"])
    assert set(feats) >= {"f", "f_y", "f_a1"}
    assert method.predict(toy(16, 2)["x"]).shape == (16, 2)


def test_predict_reads_only_f_y() -> None:
    method = build("mimmx")
    method.eval()
    x = toy(8, 3)["x"]
    f = method.model.features(x)
    f_other = f.clone()
    f_other[:, 32:] = torch.randn_like(f_other[:, 32:])
    torch.testing.assert_close(method.model.head(f), method.model.head(f_other))


def test_encoder_dim_and_feature_blocks() -> None:
    info = TaskInfo(2, ["sex", "site", "age"], [2, 3, 2])
    hp = get_method("mimmx").hparam_defaults()
    assert get_method("mimmx").encoder_dim(info, hp) == 32 + 3 * 16
    assert get_method("mimm").encoder_dim(info, get_method("mimm").hparam_defaults()) == 32 + 16


@pytest.mark.parametrize("mode", ["concat", "pairwise"])
def test_mi_given_y_penalises_the_conditional_bound(mode: str) -> None:
    """``mi_given_y``: the penalty in ``update`` is MINE's bound with marginal pairs within y."""
    method = build("mimmx", mine_hidden=32, caw_mode=mode, mi_given_y=True)
    data = toy(64, 3)
    with torch.no_grad():
        f_y, f_zs = method.split(method.model.features(data["x"]))
        a = method.attention()
        conditional = method.mi_term(f_y, f_zs, a, data["y"]).item()
        plain = method.mi_term(f_y, f_zs, a).item()
    assert abs(conditional - plain) > 1e-4
    assert method.update(data)["mi"] == pytest.approx(conditional, abs=1e-5)
    assert build("mimmx", mine_hidden=32, caw_mode=mode).update(data)["mi"] == pytest.approx(
        plain, abs=1e-5
    )


def test_clip_penalty_gradients_by_hand() -> None:
    from shortcutlab.methods.feature_split import clip_penalty_gradients

    task = [torch.tensor([3.0, 4.0]), torch.tensor([1.0]), None]  # measured norm 5
    pen = [torch.tensor([0.0, 10.0]), torch.tensor([2.0]), torch.tensor([7.0])]  # measured 10
    grads, scale = clip_penalty_gradients(task, pen, [True, False, False])
    assert scale == pytest.approx(0.5)
    assert torch.allclose(grads[0], torch.tensor([3.0, 9.0]))
    assert torch.allclose(grads[1], torch.tensor([2.0]))  # same scale off the measured tensors
    assert torch.allclose(grads[2], torch.tensor([3.5]))
    # a penalty smaller than the task gradient is left as it is
    grads, scale = clip_penalty_gradients(task, [torch.ones(2), None, None], [True, True, True])
    assert scale == 1.0 and torch.allclose(grads[0], torch.tensor([4.0, 5.0]))


@pytest.mark.parametrize("name", ["mimm", "mimmx"])
def test_mi_grad_clip_bounds_the_penalty_gradient(name) -> None:
    # lambda 1e4: unclipped, the MI gradient swamps the heads' and the task is not learned
    logs = {}
    for clip in (False, True):
        method = build(name, **MINE_TEST, **{"lambda": 1e4, "mi_grad_clip": clip})
        logs[clip] = train(method, 60)
    assert all(entry["mi_grad_scale"] == 1.0 for entry in logs[False])
    assert all(0 < entry["mi_grad_scale"] <= 1.0 for entry in logs[True])
    assert tail(logs[True], "mi_grad_scale") < 1e-2
    assert tail(logs[True], "ce_y") < tail(logs[False], "ce_y")


@pytest.mark.parametrize("name", ["mimm", "mimmx"])
def test_mi_detach_z_sends_the_penalty_through_f_y_only(name) -> None:
    """``mi_detach_z``: the MI term's gradient on the features is zero on every f_z block and
    not on f_y, so the encoder cannot lower it by emptying the confounder blocks."""
    data = toy(64, 4)
    for detach in (False, True):
        method = build(name, **MINE_TEST, mi_detach_z=detach)
        f = method.model.features(data["x"]).detach().requires_grad_(True)
        f_y, f_zs = method.split(f)
        f_zs = method.penalty_blocks(f_zs)
        if name == "mimm":
            mi = method.mines[0].lower_bound(f_y, f_zs[0])
        else:
            mi = method.mi_term(f_y, f_zs, method.attention())
        (grad,) = torch.autograd.grad(mi, f)
        dy = int(method.hparams["f_y_dim"])
        assert grad[:, :dy].abs().sum() > 0
        assert (grad[:, dy:].abs().sum() == 0) == detach
        seen = []  # update() hands its confounder blocks to penalty_blocks too
        blocks = method.penalty_blocks
        method.penalty_blocks = lambda fz, seen=seen, blocks=blocks: (
            seen.append(len(fz)) or blocks(fz)
        )
        assert all(math.isfinite(v) for v in method.update(data).values())
        assert seen == [len(method.split_attrs)]


def test_mimmx_warmup_trains_the_task_alone_then_the_full_loss() -> None:
    """``warmup_epochs``: during warm-up an update is exactly a task-only step (the confounder
    heads and the attention stay put, the MI term adds no gradient) while the critic trains;
    from the next epoch on the heads learn too."""
    data = toy(64, 5)
    method = build("mimmx", **MINE_TEST, warmup_epochs=1)
    plain = build("mimmx", **MINE_TEST)
    plain.model.load_state_dict(method.model.state_dict())
    heads = [p.detach().clone() for p in method.z_heads.parameters()]
    mine = [p.detach().clone() for p in method.mines.parameters()]
    log = method.update(data)
    assert log["warmup"] == 1.0 and math.isfinite(log["mi"])
    plain.step(plain.head_losses(plain.model.features(data["x"]), data)[0])  # ce_y alone
    for p, q in zip(method.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert all(torch.equal(p, q) for p, q in zip(method.z_heads.parameters(), heads))
    assert torch.equal(method.caw_logits.detach(), torch.zeros(2))
    assert any(not torch.equal(p, q) for p, q in zip(method.mines.parameters(), mine))
    method.on_epoch_end(0, None)
    log = method.update(data)
    assert log["warmup"] == 0.0
    assert any(not torch.equal(p, q) for p, q in zip(method.z_heads.parameters(), heads))
    assert not torch.equal(method.caw_logits.detach(), torch.zeros(2))
