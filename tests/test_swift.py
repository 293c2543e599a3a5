"""SWiFT (methods.md section 5): importances, masks, the two steps, balancing, and that it debiases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fairlearn.metrics import equalized_odds_difference
from sklearn.metrics import roc_auc_score
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.swift import (
    SwiftConfig,
    balance_external_set,
    binarise_attribute,
    binary_logit,
    class_balanced_bce,
    fairness_gap,
    fisher_importance,
    importance_ratio,
    make_masks,
    masked_extractor_step,
    reset_head,
    swift_debias,
    swift_step1,
    swift_step2,
)
from shortcutlab.models import EncoderHeadModel


def linear_model() -> EncoderHeadModel:
    """out = h @ W @ x with hand-set weights, no biases."""
    enc = nn.Linear(2, 2, bias=False)
    head = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        enc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        head.weight.copy_(torch.tensor([[3.0, 1.0]]))
    return EncoderHeadModel(enc, head, 2)


def mlp(seed: int = 0, batchnorm: bool = False) -> EncoderHeadModel:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(4, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers.append(nn.ReLU())
    return EncoderHeadModel(nn.Sequential(*layers), nn.Linear(8, 2), 8)


def debias_counting_encoder_samples(model: EncoderHeadModel, *args, **kwargs):
    """``swift_debias(model, ...)`` and the number of samples that went through the encoder
    (a forward hook adds up the batch sizes), the compute SWiFT reports."""
    seen: list[int] = []
    hook = model.encoder.register_forward_hook(lambda _m, inputs, _out: seen.append(len(inputs[0])))
    try:
        result = swift_debias(model, *args, **kwargs)
    finally:
        hook.remove()
    return result, sum(seen)


def toy_batch(n: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g)
    y = torch.arange(n) % 2
    a = (torch.arange(n) // 2) % 2
    return x, y, a


def test_fisher_importance_is_mean_squared_batch_gradient():
    model = linear_model()
    # loss = sum over the batch of h W x: dL/dh = sum (W x)^T, dL/dW = h^T (sum x)^T
    batches = [
        (torch.tensor([[1.0, 0.0]]), None, None),
        (torch.tensor([[0.0, 1.0], [1.0, 1.0]]), None, None),
    ]
    imp = fisher_importance(model, batches, lambda m, x, y, a: m(x).sum())
    # batch 1: sum x = (1, 0), W x = (1, 0);  batch 2: sum x = (1, 2), sum W x = (5, -2)
    h = torch.tensor([3.0, 1.0])
    g_head = [torch.tensor([1.0, 0.0]), torch.tensor([5.0, -2.0])]
    g_enc = [torch.outer(h, torch.tensor([1.0, 0.0])), torch.outer(h, torch.tensor([1.0, 2.0]))]
    expected_head = (g_head[0] ** 2 + g_head[1] ** 2) / 2
    expected_enc = (g_enc[0] ** 2 + g_enc[1] ** 2) / 2
    assert torch.allclose(imp["head.weight"], expected_head[None])
    assert torch.allclose(imp["encoder.weight"], expected_enc)
    assert torch.allclose(imp["head.weight"], torch.tensor([[13.0, 2.0]]))


def test_ratio_and_masks_by_hand():
    i_pred = {"w": torch.tensor([1.0, 2.0, 3.0]), "c": torch.tensor([5.0, 5.0])}
    i_bias = {"w": torch.tensor([3.0, 1.0, 2.0]), "c": torch.tensor([1.0, 2.0])}
    ratio = importance_ratio(i_pred, i_bias)
    # minmax: pred (0, .5, 1), bias (1, 0, .5); constant tensor -> zeros
    assert torch.allclose(ratio["w"], torch.tensor([1.0 / 1e-10, 0.0, 0.5]))
    assert torch.allclose(ratio["c"], torch.tensor([0.0, 1.0 / 1e-10]))
    soft = make_masks(ratio, "soft")
    assert torch.allclose(soft["w"], torch.tensor([1.0, 0.0, math.tanh(0.5)]))
    hard = make_masks(ratio, "hard")
    assert torch.equal(hard["w"], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(hard["c"], torch.tensor([0.0, 1.0]))


def test_fairness_gaps_and_balanced_bce_by_hand():
    p = torch.tensor([0.2, 0.4, 0.6, 0.9, 0.1, 0.3])
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    a = torch.tensor([0, 1, 0, 1, 0, 1])
    fpr0, fpr1, tpr0, tpr1 = (0.2 + 0.1) / 2, 0.4, 0.6, (0.9 + 0.3) / 2
    eodds = 0.5 * abs((fpr0 - fpr1) + (tpr0 - tpr1))
    assert fairness_gap(p, y, a, "eodds").item() == pytest.approx(eodds)
    assert fairness_gap(p, y, a, "eopp").item() == pytest.approx(abs(tpr0 - tpr1))
    assert fairness_gap(p, y, a, "spd").item() == pytest.approx(abs(0.3 - 1.6 / 3))
    eodds_abs = 0.5 * (abs(fpr0 - fpr1) + abs(tpr0 - tpr1))
    assert fairness_gap(p, y, a, "eodds_abs").item() == pytest.approx(eodds_abs)
    logit = torch.tensor([0.0, 2.0, -1.0])
    yb = torch.tensor([1, 1, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, yb.float(), reduction="none")
    expected = 0.5 * ((bce[0] + bce[1]) / 2 + bce[2])
    assert class_balanced_bce(logit, yb).item() == pytest.approx(expected.item())
    assert torch.equal(binary_logit(torch.tensor([[1.0, 3.0]])), torch.tensor([2.0]))


def test_signed_eodds_cancels_opposite_gaps_and_eodds_abs_does_not():
    # attribute 1 raises the score of negatives by 0.3 and lowers it for positives by 0.3:
    # FPR gap -0.3, TPR gap +0.3; the signed sum is 0, the sum of magnitudes 0.3
    p = torch.tensor([0.1, 0.4, 0.9, 0.6])
    y = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([0, 1, 0, 1])
    assert fairness_gap(p, y, a, "eodds").item() == pytest.approx(0.0, abs=1e-7)
    assert fairness_gap(p, y, a, "eodds_abs").item() == pytest.approx(0.3)
    # its gradient pushes the two cells of each class together (the signed loss gives none)
    q = p.clone().requires_grad_(True)
    fairness_gap(q, y, a, "eodds_abs").backward()
    assert q.grad[0] < 0 < q.grad[1] and q.grad[3] < 0 < q.grad[2]
    with pytest.raises(ShortcutlabError, match="eodds_abs"):
        SwiftConfig(fairness="eodds_sum")


def test_step1_gradients_are_exactly_the_masked_ones():
    model = mlp(batchnorm=True).eval()
    x, y, a = toy_batch()
    beta = 0.1
    torch.manual_seed(1)
    masks = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    # unmasked gradients of the step-1 loss
    logit = binary_logit(model(x))
    loss = beta * class_balanced_bce(logit, y) + (1 - beta) * fairness_gap(
        torch.sigmoid(logit), y, a, "eodds"
    )
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    model.head.requires_grad_(False)
    opt = torch.optim.SGD(model.encoder.parameters(), lr=0.0)
    masked_extractor_step(model, opt, masks, (x, y, a), beta, "eodds")
    for (n, p), g in zip(model.encoder.named_parameters(), grads, strict=True):
        assert torch.allclose(p.grad, g * masks[f"encoder.{n}"], atol=1e-7), n
    assert all(p.grad is None for p in model.head.parameters())


def test_step1_leaves_the_head_and_zero_mask_entries_unchanged():
    model = mlp(batchnorm=True).eval()
    data = toy_batch()
    masks = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    masks["encoder.0.weight"][0] = 0.0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = SwiftConfig(step1_epochs=3, step1_lr=0.1, batch_size=8)
    swift_step1(model, masks, data, cfg, torch.Generator().manual_seed(0))
    after = dict(model.named_parameters())
    assert torch.equal(after["head.weight"], before["head.weight"])
    assert torch.equal(after["head.bias"], before["head.bias"])
    assert torch.equal(after["encoder.0.weight"][0], before["encoder.0.weight"][0])
    assert not torch.equal(after["encoder.0.weight"], before["encoder.0.weight"])
    assert all(p.requires_grad for p in model.parameters())


def test_step2_resets_masked_head_entries_and_freezes_the_extractor():
    model = mlp(batchnorm=True).eval()
    data = toy_batch()
    masks = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    masks["head.weight"][0, :3] = 1.0  # mean 3/16: these three exceed it
    masks["head.weight"][1, 3] = 0.1  # below the mean: kept
    masks["head.bias"][1] = 1.0
    head = model.head
    expected = head.weight.detach().clone()
    expected[0, :3] = 0.0
    zeroed = reset_head(model, masks)
    assert zeroed == {"head.weight": 3, "head.bias": 1}
    assert torch.equal(head.weight, expected)
    assert head.bias[1].item() == 0.0

    model = mlp(batchnorm=True).eval()
    enc_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.detach().clone()
    cfg = SwiftConfig(step2_epochs=3, step2_lr=0.1, batch_size=8)
    swift_step2(model, masks, data, cfg, torch.Generator().manual_seed(0))
    for k, v in model.encoder.state_dict().items():  # weights and batch-norm statistics
        assert torch.equal(v, enc_before[k]), k
    assert not torch.equal(model.head.weight, head_before)
    assert all(p.requires_grad for p in model.parameters())


def test_balancing_gives_equal_attribute_groups_within_each_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    a = np.where(rng.random(500) < 0.85, y, 1 - y)
    rows = balance_external_set(y, a, seed=3)
    assert len(np.unique(rows)) == len(rows)
    for c in (0, 1):
        sel = y[rows] == c
        assert (a[rows][sel] == 0).sum() == (a[rows][sel] == 1).sum() > 0
        # the smaller group is kept whole
        assert sel.sum() == 2 * min(((y == c) & (a == 0)).sum(), ((y == c) & (a == 1)).sum())
    assert np.array_equal(rows, balance_external_set(y, a, seed=3))
    assert not np.array_equal(rows, balance_external_set(y, a, seed=4))
    with pytest.raises(ShortcutlabError, match="no samples of class 1 in one attribute group"):
        balance_external_set(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0]))


def test_multivalued_attribute_keeps_best_and_worst_auc_groups():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    a = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # group 4 has one class: no AUROC
    s = np.array([0.1, 0.9, 0.6, 0.5, 0.4, 0.5, 0.5, 0.5, 0.0, 1.0])
    rows, a_bin = binarise_attribute(a, y, s)  # AUROC: 1, 0, 1, 0.5 -> best 0, worst 1
    assert rows.tolist() == [0, 1, 2, 3]
    assert a_bin.tolist() == [0, 0, 1, 1]


def make_toy(n: int, rho: float, rng: np.random.Generator):
    """Feature 0 carries y weakly, feature 1 carries the attribute a strongly; P(a = y) = rho."""
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < rho, y, 1 - y)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x[:, 0] += 2 * y - 1
    x[:, 1] += 2.5 * (2 * a - 1)
    return torch.tensor(x), torch.tensor(y), torch.tensor(a)


def scores(model, x, y, a) -> dict[str, float]:
    with torch.no_grad():
        s = binary_logit(model(x)).numpy()
    pred = (s > 0).astype(int)
    return {
        "acc": float((pred == y.numpy()).mean()),
        "auroc": float(roc_auc_score(y.numpy(), s)),
        "eodds": float(equalized_odds_difference(y.numpy(), pred, sensitive_features=a.numpy())),
    }


def biased_model(rng: np.random.Generator) -> EncoderHeadModel:
    """An MLP trained by ERM on toy data where P(a = y) = 0.9: it leans on the attribute."""
    torch.manual_seed(0)
    x, y, a = make_toy(2000, 0.9, rng)
    model = EncoderHeadModel(nn.Sequential(nn.Linear(8, 32), nn.ReLU()), nn.Linear(32, 2), 32)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_swift_narrows_the_equalized_odds_gap_of_a_biased_model():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = biased_model(rng)
    test = make_toy(4000, 0.5, rng)  # balanced: every (y, a) cell about the same size
    before = scores(model, *test)
    assert before["eodds"] > 0.3  # the ERM model uses the attribute

    external = make_toy(1000, 0.9, rng)  # same biased distribution, balanced inside SWiFT
    # lrs scaled up for a 2-layer MLP trained for a few steps (paper defaults suit deep nets)
    cfg = SwiftConfig(step1_lr=1e-2, step2_lr=1e-1, batch_size=64, seed=0)
    result, encoder_samples = debias_counting_encoder_samples(model, *external, config=cfg)
    after = scores(model, *test)
    assert after["eodds"] <= 0.5 * before["eodds"]
    assert after["auroc"] >= before["auroc"] - 0.02
    assert after["acc"] >= before["acc"] - 0.02
    assert result.compute.samples_processed == encoder_samples
    assert result.compute.wall_seconds > 0


def test_multivalued_attribute_runs_on_the_two_extreme_groups():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x, y, _ = make_toy(600, 0.5, rng)
    a = torch.as_tensor(rng.integers(0, 3, 600))
    x[a == 2, 0] = 0.0  # group 2: no label signal, the worst AUROC
    model = EncoderHeadModel(nn.Sequential(nn.Linear(8, 16), nn.ReLU()), nn.Linear(16, 2), 16)
    with torch.no_grad():
        model.encoder[0].weight.zero_()
        model.encoder[0].weight[0, 0] = 1.0
        model.encoder[0].bias.zero_()
        model.head.weight.zero_()
        model.head.weight[1, 0] = 1.0
    cfg = SwiftConfig(step1_epochs=1, step2_epochs=1)
    result, encoder_samples = debias_counting_encoder_samples(model, x, y, a, config=cfg)
    assert result.compute.samples_processed == encoder_samples  # binarising scores all rows
    kept = a[torch.as_tensor(result.kept_rows)]
    assert set(kept.tolist()) == {0, 2} or set(kept.tolist()) == {1, 2}
    assert (kept == 2).sum() * 2 == len(kept)


def test_val_selection_keeps_the_candidate_with_the_smallest_selection_gap():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = biased_model(rng)
    external, select = make_toy(1000, 0.9, rng), make_toy(1000, 0.9, rng)
    cfg = SwiftConfig(step1_lr=1e-2, step2_lr=1e-1, step2_epochs=5, select="val", seed=0)
    result, encoder_samples = debias_counting_encoder_samples(
        model, *external, config=cfg, select_data=select
    )
    scored = [h for h in result.history if "select" in h]
    assert [h["select"] for h in scored] == ["input"] + [f"step2_epoch_{k}" for k in range(5)]
    auroc_in = scored[0]["select_auroc"]
    allowed = [h for h in scored if h["select_auroc"] >= auroc_in - cfg.max_auroc_drop]
    best = min(allowed, key=lambda h: h["select_gap"])
    assert result.selected == best["select"] != "input"  # this model is biased: SWiFT helps
    assert scores(model, *select)["eodds"] == pytest.approx(best["select_gap"])
    # selection's passes (the input model, the step-1 features) are counted too
    assert result.compute.samples_processed == encoder_samples


def test_val_selection_returns_a_model_that_is_already_fair_unchanged():
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    x, y, a = make_toy(400, 0.9, rng)
    model = EncoderHeadModel(nn.Sequential(nn.Linear(8, 4), nn.ReLU()), nn.Linear(4, 2), 4)
    with torch.no_grad():  # predicts y from feature 0 alone
        model.encoder[0].weight.zero_()
        model.encoder[0].weight[0, 0] = 1.0
        model.encoder[0].bias.zero_()
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1, 0] = 4.0
        model.head.weight[0, 0] = -4.0
    # on these selection images the model is exact in every group: gap 0, nothing can beat it
    ys = torch.tensor([0, 0, 1, 1] * 10)
    xs = torch.zeros(40, 8)
    xs[:, 0] = 3.0 * (2 * ys - 1)
    a_s = torch.tensor([0, 1, 0, 1] * 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SwiftConfig(step1_lr=1e-1, step2_lr=1.0, step1_epochs=3, step2_epochs=3, select="val")
    result = swift_debias(model, x, y, a, config=cfg, select_data=(xs, ys, a_s))
    assert result.selected == "input"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # without selection the same SWiFT run does change the model
    plain = SwiftConfig(step1_lr=1e-1, step2_lr=1.0, step1_epochs=3, step2_epochs=3)
    swift_debias(model, x, y, a, config=plain)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_val_selection_without_a_selection_set_or_with_a_bad_rule_is_refused():
    x, y, a = toy_batch()
    with pytest.raises(ShortcutlabError, match="selection set"):
        swift_debias(mlp(), x, y, a, config=SwiftConfig(select="val"))
    with pytest.raises(ShortcutlabError, match="select must be one of"):
        SwiftConfig(select="test")


def test_swift_config_defaults_are_the_method_defaults():
    import dataclasses

    from shortcutlab.methods.swift import Swift, swift_config_from_hparams

    defaults = Swift.hparam_defaults()
    fields = {f.name for f in dataclasses.fields(SwiftConfig)} - {"seed"}
    assert fields == set(Swift.HPARAMS) - {"attribute"}  # every SWiFT setting is a hyperparameter
    config = SwiftConfig()
    for name in fields:
        assert getattr(config, name) == defaults[name], name
    assert swift_config_from_hparams(defaults, seed=3) == dataclasses.replace(config, seed=3)
