"""MixUp and CutMix with their random draws fixed: the images the model sees and the loss, against
a hand computation.

The model is a fixed linear read-out: logit 0 = the mean pixel of the (mixed) image, logit 1 = 0,
so ``CE(y = 0) = softplus(-m)`` and ``CE(y = 1) = softplus(m)`` for an image of mean ``m``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.models import EncoderHeadModel

SIDE = 8
PERM = torch.tensor([2, 0, 3, 1])


def build(name: str, **hp):
    head = nn.Linear(SIDE * SIDE, 2)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = 1.0 / (SIDE * SIDE)
        head.bias.zero_()
    model = EncoderHeadModel(nn.Flatten(), head, SIDE * SIDE)
    cls = get_method(name)
    info = TaskInfo(2, ["site"], [2], in_channels=1, image_size=SIDE)
    method = cls(model, info, {**cls.hparam_defaults(), **hp})
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return method, seen


def batch() -> dict[str, torch.Tensor]:
    # distinct pixel values in [0, 1) without a random draw (the draws are patched in the tests)
    x = (torch.arange(4 * SIDE * SIDE).reshape(4, 1, SIDE, SIDE) * 37 % 101).float() / 101
    y = torch.tensor([0, 1, 1, 0])
    return {"x": x, "y": y, "z": torch.zeros(4, 1, dtype=torch.long), "g": y * 2}


def ce(mean_pixel: float, label: int) -> float:
    """Cross-entropy of logits (mean_pixel, 0): softplus(-m) for class 0, softplus(m) for 1."""
    m = mean_pixel if label == 1 else -mean_pixel
    return math.log1p(math.exp(m))


def mixed_loss(images: torch.Tensor, y: torch.Tensor, lam: float) -> float:
    """``mean_i lam CE(x~_i, y_i) + (1 - lam) CE(x~_i, y_perm(i))``, one image at a time."""
    terms = []
    for i in range(len(y)):
        m = float(images[i].mean())
        terms.append(lam * ce(m, int(y[i])) + (1 - lam) * ce(m, int(y[PERM[i]])))
    return sum(terms) / len(terms)


class FixedBeta:
    """Stands in for ``torch.distributions.Beta``: records its parameters, draws ``value``."""

    calls: list[tuple[float, float]] = []
    value = 0.0

    def __init__(self, a, b):
        FixedBeta.calls.append((float(a), float(b)))

    def sample(self):
        return torch.tensor(FixedBeta.value)


@pytest.fixture
def draws(monkeypatch):
    """Fix the draws: Beta -> ``FixedBeta.value``, randperm -> ``PERM``, randint -> the queue
    ``ints`` (CutMix's box centre), rand -> ``uniform[0]`` (CutMix's mix-or-not)."""
    FixedBeta.calls = []
    state = {"ints": [], "uniform": [0.0]}
    monkeypatch.setattr(torch.distributions, "Beta", FixedBeta)
    monkeypatch.setattr(torch, "randperm", lambda n, **_k: PERM.clone())
    monkeypatch.setattr(
        torch, "randint", lambda high, size, **_k: torch.tensor(state["ints"].pop(0))
    )
    monkeypatch.setattr(torch, "rand", lambda *_a, **_k: torch.tensor(state["uniform"][0]))
    return state


def test_mixup_mixes_images_and_labels_with_the_drawn_weight(draws):
    FixedBeta.value = 0.3
    method, seen = build("mixup", alpha=0.4)
    b = batch()
    log = method.update(b)
    assert FixedBeta.calls == [(0.4, 0.4)]
    expected = 0.3 * b["x"] + 0.7 * b["x"][PERM]
    torch.testing.assert_close(seen[0], expected)
    # pixel by pixel, e.g. image 0 is 0.3 of itself and 0.7 of image PERM[0] = 2
    assert seen[0][0, 0, 1, 2].item() == pytest.approx(
        0.3 * b["x"][0, 0, 1, 2].item() + 0.7 * b["x"][2, 0, 1, 2].item()
    )
    assert log["loss"] == pytest.approx(mixed_loss(expected, b["y"], 0.3), rel=1e-5)


@pytest.mark.parametrize(
    "centre,rows,cols",
    [
        ((3, 5), slice(1, 5), slice(3, 7)),  # a 4x4 box inside the image
        ((0, 7), slice(0, 2), slice(5, 8)),  # the same box clipped at the top right corner
    ],
)
def test_cutmix_pastes_the_box_and_mixes_the_labels_by_its_area(draws, centre, rows, cols):
    # lam 0.75: the box's side is sqrt(1 - 0.75) = 1/2 of the image's, 4 pixels, centred
    FixedBeta.value = 0.75
    draws["ints"] = list(centre)
    method, seen = build("cutmix", alpha=1.0)
    b = batch()
    log = method.update(b)
    expected = b["x"].clone()
    expected[:, :, rows, cols] = b["x"][PERM][:, :, rows, cols]
    assert torch.equal(seen[0], expected)
    area = (rows.stop - rows.start) * (cols.stop - cols.start)
    kept = 1 - area / SIDE**2  # the area actually kept: 48/64, or 58/64 when clipped
    assert log["loss"] == pytest.approx(mixed_loss(expected, b["y"], kept), rel=1e-5)
    assert not torch.equal(b["x"], seen[0]) and torch.equal(b["x"], batch()["x"])  # a copy


def test_cutmix_leaves_a_batch_unmixed_when_the_coin_says_so(draws):
    draws["uniform"] = [0.7]  # >= prob 0.5: no box, plain cross-entropy
    method, seen = build("cutmix", prob=0.5)
    b = batch()
    log = method.update(b)
    assert FixedBeta.calls == [] and torch.equal(seen[0], b["x"])
    expected = sum(ce(float(b["x"][i].mean()), int(b["y"][i])) for i in range(4)) / 4
    assert log["loss"] == pytest.approx(expected, rel=1e-5)
