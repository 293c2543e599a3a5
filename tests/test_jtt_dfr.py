"""JTT and DFR (methods.md section 2): the error upweighting, balanced subsampling, head refit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _fake_context import FakeContext
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.runner import torch_threads
from shortcutlab.methods import get_method
from shortcutlab.methods.base import TaskInfo
from shortcutlab.methods.dfr import DFR, fit_balanced_head, group_balanced_subsample
from shortcutlab.methods.jtt import JTT, upweight_vector, weights_by_index
from shortcutlab.models import EncoderHeadModel

INFO = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], epochs=5)


def mlp(seed: int = 0) -> EncoderHeadModel:
    torch.manual_seed(seed)
    return EncoderHeadModel(nn.Sequential(nn.Linear(8, 32), nn.ReLU()), nn.Linear(32, 2), 32)


def toy(n: int, rho: float, seed: int) -> dict[str, torch.Tensor]:
    """y weakly in feature 0, attribute a strongly in feature 1, P(a = y) = rho."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < rho, y, 1 - y)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 0] += 2 * y - 1
    x[:, 1] += 2.5 * (2 * a - 1)
    yt, at = torch.tensor(y), torch.tensor(a)
    return {
        "x": torch.tensor(x),
        "y": yt,
        "z": at[:, None],
        "g": yt * 2 + at,
        "idx": torch.arange(n),
    }


def worst_group_accuracy(model, data) -> float:
    with torch.no_grad():
        pred = model(data["x"]).argmax(1)
    correct = (pred == data["y"]).float()
    return min(correct[data["g"] == g].mean().item() for g in data["g"].unique())


def test_upweight_vector_from_a_set_of_errors():
    errors = torch.tensor([False, True, False, True, True])
    assert upweight_vector(errors, 20).tolist() == [1.0, 20.0, 1.0, 20.0, 20.0]
    table = weights_by_index(torch.tensor([4, 0, 2]), torch.tensor([20.0, 1.0, 20.0]))
    assert table.tolist() == [1.0, 1.0, 20.0, 1.0, 20.0]


def test_jtt_upweights_the_errors_of_its_identification_model():
    train = toy(200, 0.9, seed=0)
    train["idx"] = torch.arange(200) + 3  # indices need not start at 0
    ctx = FakeContext(INFO, train, batch_size=50)
    method = get_method("jtt")(mlp(), INFO, {**JTT.hparam_defaults(), "jtt_epochs": 3})
    method.on_train_start(ctx)
    identifier, epochs = ctx.fit_calls[0]
    assert epochs == 3 and identifier.model is not method.model
    errors = ctx.predict(identifier, train).argmax(1) != train["y"]
    assert 0 < method.num_errors == int(errors.sum())
    expected = torch.where(errors, 20.0, 1.0)
    assert torch.equal(method.example_weights[train["idx"]], expected)
    logs = method.update({k: v[:50] for k, v in train.items()})
    assert logs["error_fraction"] == pytest.approx(errors[:50].float().mean().item())


def test_group_balanced_subsample():
    g = np.array([0] * 10 + [1] * 3 + [2] * 7 + [3] * 5)
    rows = group_balanced_subsample(g, seed=1)
    assert np.bincount(g[rows]).tolist() == [3, 3, 3, 3]
    assert len(set(rows)) == len(rows)
    assert np.array_equal(rows, group_balanced_subsample(g, seed=1))


def test_fit_balanced_head_reproduces_logits_in_feature_space():
    rng = np.random.default_rng(0)
    f = rng.normal(3.0, 2.0, size=(400, 5))
    y = (f[:, 0] > 3).astype(int)
    g = y * 2 + rng.integers(0, 2, 400)
    w, b = fit_balanced_head(f, y, g, 2, c=1.0, subsamples=3)
    pred = (f @ w.T + b).argmax(1)
    assert w.shape == (2, 5) and (pred == y).mean() > 0.95


def test_dfr_head_retraining_improves_worst_group_accuracy():
    with torch_threads(1):
        _dfr_improves_worst_group()


def _dfr_improves_worst_group():
    train, holdout, test = toy(2000, 0.9, 0), toy(500, 0.9, 1), toy(4000, 0.5, 2)
    method = DFR(mlp(), INFO, {**DFR.hparam_defaults(), "lr": 1e-2, "weight_decay": 0.0})
    for _ in range(100):
        method.update(train)
    before = worst_group_accuracy(method.model, test)
    encoder_before = [p.clone() for p in method.model.encoder.parameters()]
    method.on_train_end(FakeContext(INFO, train, holdout=holdout, batch_size=128))
    after = worst_group_accuracy(method.model, test)
    assert before < 0.6 and after >= before + 0.15
    for p, q in zip(method.model.encoder.parameters(), encoder_before, strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ShortcutlabError, match="needs a held-out split"):
        method.on_train_end(FakeContext(INFO, train))
    assert DFR.holdout_fraction > 0
