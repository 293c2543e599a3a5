import torch

from shortcutlab.experiment.context import Context
from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.models import build_model
from shortcutlab.store.layout import RunLayout


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
