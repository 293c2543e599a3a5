"""KD and GroupDistil (methods.md section 4): the loss formula, GroupDRO equivalence, teachers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _fake_context import FakeContext
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods import get_method
from shortcutlab.methods.base import TaskInfo
from shortcutlab.methods.groupdistil import GroupDistil
from shortcutlab.methods.groupdro import GroupDRO, group_weighted_loss
from shortcutlab.methods.kd import KD, distillation_loss
from shortcutlab.models import EncoderHeadModel, build_model
from shortcutlab.models.checkpoint import Checkpoint
from shortcutlab.models.checkpoint import load_trained_model as load_teacher

INFO = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], in_channels=1)


def mlp(seed: int) -> EncoderHeadModel:
    torch.manual_seed(seed)
    return EncoderHeadModel(nn.Sequential(nn.Linear(6, 16), nn.ReLU()), nn.Linear(16, 2), 16)


def hparams(cls, **kw):
    return {**cls.hparam_defaults(), **kw}


def toy_batch(n: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long()
    z = (torch.rand(n, generator=g) < 0.3).long()[:, None]
    return {"x": x, "y": y, "z": z, "g": y * 2 + z[:, 0], "idx": torch.arange(n)}


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def test_per_group_loss_and_weight_update_follow_the_formula():
    s = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    g = torch.tensor([0, 2, 2])
    alpha, tau, eta = 0.3, 2.0, 0.5
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])

    def by_hand(si, ti, yi):
        ce = -np.log(softmax(si)[yi])
        pt, ps = softmax(ti / tau), softmax(si / tau)
        kl = float((pt * np.log(pt / ps)).sum())
        return (1 - alpha) * ce + alpha * tau**2 * kl

    per = [by_hand(s[i].numpy(), t[i].numpy(), int(y[i])) for i in range(3)]
    losses = distillation_loss(s, t, y, alpha, tau)
    assert losses.numpy() == pytest.approx(per, rel=1e-5)

    l_g = np.array([per[0], 0.0, (per[1] + per[2]) / 2, 0.0])
    q_new = q.numpy() * np.exp(eta * l_g)  # absent groups: exp(0) = 1
    q_new /= q_new.sum()
    loss, q_out, group_loss = group_weighted_loss(losses, g, q, eta)
    assert group_loss.numpy() == pytest.approx(l_g, rel=1e-5)
    assert q_out.numpy() == pytest.approx(q_new, rel=1e-5)
    assert loss.item() == pytest.approx(float((q_new * l_g).sum()), rel=1e-5)


def test_groupdistil_with_alpha_zero_is_groupdro():
    common = {"lr": 1e-2, "weight_decay": 1e-3, "eta": 0.5}
    dro = GroupDRO(mlp(0), INFO, hparams(GroupDRO, **common))
    gd = GroupDistil(copy.deepcopy(dro.model), INFO, hparams(GroupDistil, alpha=0.0, **common))
    gd.set_teacher(mlp(1))
    for seed in range(4):
        batch = toy_batch(seed=seed)
        a, b = dro.update(batch), gd.update(batch)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert torch.allclose(dro.q, gd.q)
    for p, r in zip(dro.model.parameters(), gd.model.parameters(), strict=True):
        assert torch.allclose(p, r, atol=1e-6)
    assert not torch.allclose(gd.q, torch.full((4,), 0.25))


@pytest.mark.parametrize("cls", [KD, GroupDistil])
def test_update_lowers_the_kl_to_a_fixed_teacher(cls):
    method = cls(mlp(0), INFO, hparams(cls, alpha=1.0, tau=2.0, lr=1e-2))
    teacher = mlp(7)
    method.set_teacher(teacher)
    batch = toy_batch()

    def kl() -> float:
        with torch.no_grad():
            return (
                distillation_loss(
                    method.predict(batch["x"]), teacher(batch["x"]), batch["y"], 1.0, 2.0
                )
                .mean()
                .item()
            )

    before = kl()
    for _ in range(60):
        method.update(batch)
    assert kl() < 0.2 * before
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(k.startswith("_teacher") for k in method.state_dict())


def _runner_checkpoint(model, backbone: str = "small-cnn") -> Checkpoint:
    return Checkpoint(
        method="erm",
        name="erm",
        hparams={},
        model_state=model.state_dict(),
        method_state={},
        info={"num_classes": 2, "in_channels": 1, "image_size": 16},
        feature_dim=model.feature_dim,
        train={"backbone": backbone},
        dataset={},
        seed=0,
        selected_epoch=0,
        selection={},
        compute={},
    )


def test_teacher_checkpoint_loads_a_run_checkpoint_or_a_bare_state_dict(tmp_path):
    info = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], image_size=16)
    model = build_model("small-cnn", 1, 2, image_size=16, feature_dim=24).eval()
    x = torch.rand(3, 1, 16, 16)
    _runner_checkpoint(model).save(tmp_path / "runner.pt")
    # the run checkpoint names its backbone: the caller's default is not used
    loaded = load_teacher(tmp_path / "runner.pt", info, "resnet18").eval()
    assert torch.allclose(loaded(x), model(x))
    assert Checkpoint.load(tmp_path / "runner.pt").feature_dim == 24
    torch.save(model.state_dict(), tmp_path / "bare.pt")  # bare state dict, caller's backbone
    assert torch.allclose(load_teacher(tmp_path / "bare.pt", info, "small-cnn").eval()(x), model(x))


def test_checkpoints_of_other_layouts_are_refused_in_one_sentence(tmp_path):
    info = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], image_size=16)
    model = build_model("small-cnn", 1, 2, image_size=16, feature_dim=24).eval()
    # a nested layout of another tool: no format tag, not a plain state dict
    other = {"model_state": model.state_dict(), "config": {"model": {"backbone": "small-cnn"}}}
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ShortcutlabError, match="neither a shortcutlab checkpoint"):
        load_teacher(tmp_path / "other.pt", info, "small-cnn")
    with pytest.raises(ShortcutlabError, match="not a shortcutlab checkpoint"):
        Checkpoint.load(tmp_path / "other.pt")
    newer = {**torch.load(_save(_runner_checkpoint(model), tmp_path / "r.pt")), "format": "x/2"}
    torch.save(newer, tmp_path / "newer.pt")
    with pytest.raises(ShortcutlabError, match="format 'x/2'"):
        load_teacher(tmp_path / "newer.pt", info, "small-cnn")
    # an object that needs the full unpickler is never unpickled
    torch.save({"model_state": model.state_dict(), "obj": _Pickled()}, tmp_path / "pickled.pt")
    with pytest.raises(ShortcutlabError, match="without unpickling"):
        load_teacher(tmp_path / "pickled.pt", info, "small-cnn")
    with pytest.raises(ShortcutlabError, match="does not exist"):
        load_teacher(tmp_path / "missing.pt", info, "small-cnn")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ShortcutlabError, match="does not fit backbone 'resnet18'"):
        load_teacher(tmp_path / "bare.pt", info, "resnet18")


class _Pickled:
    """A plain object: ``torch.load(weights_only=True)`` refuses it."""


def _save(ckpt: Checkpoint, path):
    ckpt.save(path)
    return path


def test_on_train_start_trains_a_teacher_and_caches_its_logits():
    info = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], image_size=16)
    n = 20
    train = {
        "x": torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8),
        "y": torch.arange(n) % 2,
        "z": (torch.arange(n) % 3 == 0).long()[:, None],
        "idx": torch.arange(n) + 5,
    }
    train["g"] = train["y"] * 2 + train["z"][:, 0]
    hp = hparams(KD, teacher_backbone="small-cnn", teacher_epochs=1)
    method = get_method("kd")(build_model("small-cnn", 1, 2, 16, 16), info, hp)
    ctx = FakeContext(info, train, batch_size=8)
    method.on_train_start(ctx)
    assert len(ctx.fit_calls) == 1 and ctx.fit_calls[0][1] == 1
    batch = {k: v[[3, 7]] for k, v in train.items()}
    batch["x"] = batch["x"].float() / 255
    with torch.no_grad():
        expected = method.teacher(batch["x"])
    assert torch.allclose(method.teacher_logits(batch), expected, atol=1e-5)
    assert not method.teacher.training
