import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.experiment.context import Context
from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.models import EncoderHeadModel, build_model
from shortcutlab.store.layout import RunLayout

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


def _info():
    return TaskInfo(
        num_classes=2,
        attributes=["site"],
        attribute_cardinalities=[2],
        in_channels=1,
        image_size=16,
    )


def _method(name, **hp):
    cls = get_method(name)
    torch.manual_seed(0)
    model = build_model("small-cnn", 1, 2, 16, 8)
    return cls(model, _info(), {**cls.hparam_defaults(), **hp})


def test_rebalance_draws_every_group_equally_often():
    g = torch.tensor([0] * 900 + [1] * 50 + [2] * 30 + [3] * 20)
    tensors = {
        "x": torch.zeros(1000, 1, 2, 2, dtype=torch.uint8),
        "y": g // 2,
        "z": (g % 2)[:, None],
        "g": g,
    }
    ctx = Context(
        train=tensors,
        val=tensors,
        info=_info(),
        layout=RunLayout.single("unused", "rebalance", 0),
        device=torch.device("cpu"),
        seed=0,
        batch_size=100,
    )
    w = ctx.sampling_weights(_method("rebalance"), tensors)
    draws = torch.cat(
        [
            b["g"]
            for b in ctx.batches(tensors, weights=w, generator=torch.Generator().manual_seed(0))
        ]
    )
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.04)
    assert ctx.sampling_weights(_method("erm"), tensors) is None


def test_groupdro_weights_move_to_the_worst_group():
    m = _method("groupdro", eta=0.5)
    torch.manual_seed(1)
    x = torch.rand(32, 1, 16, 16)
    y = torch.randint(0, 2, (32,))
    g = y * 2  # groups 0 and 2 present
    # make group 2 much harder: its labels are flipped relative to an easy signal
    x[y == 1] += 0.5
    batch = {"x": x, "y": y, "z": torch.zeros(32, 1, dtype=torch.long), "g": g}
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(m.predict(x), y, reduction="none")
    worse = 0 if losses[g == 0].mean() > losses[g == 2].mean() else 2
    q0 = m.q.clone()
    m.update(batch)
    assert m.q[worse] > q0[worse]
    assert torch.isclose(m.q.sum(), torch.tensor(1.0))
    assert m.q[1] < q0[1] and m.q[3] < q0[3]  # absent groups lose weight by renormalisation


def test_groupdro_weight_ratio_follows_the_exponentiated_loss_gap():
    """Algorithm 1 of Sagawa et al.: ``q_g <- q_g exp(eta l_g)``, renormalised, so after one
    update ``q_a / q_b`` is multiplied by ``exp(eta (l_a - l_b))`` with the batch's per-group mean
    losses (computed here from the model's logits before the step); absent groups get no factor."""
    eta = 0.7
    m = _method("groupdro", eta=eta)
    m.q.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))  # not uniform: the update is multiplicative
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(30, 1, 16, 16, generator=gen)
    y = torch.tensor([0] * 10 + [1] * 20)
    z = torch.tensor([0] * 10 + [0] * 8 + [1] * 12)
    g = y * 2 + z  # groups 0, 2, 3 present, group 1 absent
    x[g == 3] += 0.8  # groups differ in their losses
    batch = {"x": x, "y": y, "z": z[:, None], "g": g}
    with torch.no_grad():  # train mode, as in update (batch norm on the batch's statistics)
        losses = F.cross_entropy(m.predict(x), y, reduction="none")
    group_loss = {k: losses[g == k].mean().item() for k in (0, 2, 3)}
    assert max(group_loss.values()) - min(group_loss.values()) > 0.05  # a gap to follow
    q0 = m.q.clone()
    log = m.update(batch)
    q = m.q
    for a, b in [(0, 2), (3, 2), (3, 0)]:
        expected = math.exp(eta * (group_loss[a] - group_loss[b]))
        assert (q[a] / q[b]) / (q0[a] / q0[b]) == pytest.approx(expected, rel=1e-4)
    # the absent group 1 keeps its old share relative to a present group's unscaled weight
    assert (q[1] / q[2]) / (q0[1] / q0[2]) == pytest.approx(
        math.exp(-eta * group_loss[2]), rel=1e-4
    )
    assert q.sum().item() == pytest.approx(1.0)
    # the step's loss weighs the per-group losses by the new q, the log names the worst group's
    assert log["loss"] == pytest.approx(
        sum(q[k].item() * group_loss[k] for k in (0, 2, 3)), rel=1e-4
    )
    assert log["worst_group_loss"] == pytest.approx(max(group_loss.values()), rel=1e-5)


def _shortcut_data(n: int, p_same: float, seed: int) -> dict[str, torch.Tensor]:
    """4x4 'images': pixel (0, 0) = y + noise (the task, overlapping classes), pixel (0, 1) =
    2 z + tiny noise (a clean, large spurious attribute), the rest noise; P(z = y) = p_same."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    z = torch.where(torch.rand(n, generator=gen) < p_same, y, 1 - y)
    x = torch.randn(n, 1, 4, 4, generator=gen) * 0.3
    x[:, 0, 0, 0] += y.float()
    x[:, 0, 0, 1] = 2 * z.float() + 0.05 * torch.randn(n, generator=gen)
    return {"x": x, "y": y, "z": z[:, None], "g": y * 2 + z}


def _worst_group_accuracy_after_training(name: str, seed: int, **hp) -> float:
    cls = get_method(name)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
    model = EncoderHeadModel(encoder, nn.Linear(8, 2), 8)
    info = TaskInfo(2, ["site"], [2], in_channels=1, image_size=4)
    m = cls(model, info, {**cls.hparam_defaults(), "lr": 1e-2, "weight_decay": 0.0, **hp})
    train = _shortcut_data(512, 0.95, seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(10):
        order = torch.randperm(512, generator=gen)
        for start in range(0, 512, 64):
            m.update({k: v[order[start : start + 64]] for k, v in train.items()})
    test = _shortcut_data(2000, 0.5, 100 + seed)  # every group well represented
    with torch.no_grad():
        correct = m.predict(test["x"]).argmax(1) == test["y"]
    return min(correct[test["g"] == k].float().mean().item() for k in range(4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groupdro_beats_erm_on_the_worst_group_under_a_strong_shortcut(seed):
    erm = _worst_group_accuracy_after_training("erm", seed)
    dro = _worst_group_accuracy_after_training("groupdro", seed, eta=0.1)
    assert erm < 0.6  # the shortcut is taken: a minority group is mostly misclassified
    assert dro > erm + 0.2, (dro, erm)


def test_erm_update_lowers_the_loss():
    m = _method("erm", lr=1e-2)
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    batch = {"x": x, "y": y, "z": torch.zeros(64, 1, dtype=torch.long), "g": y * 2}
    first = m.update(batch)["loss"]
    for _ in range(20):
        last = m.update(batch)["loss"]
    assert last < first
