"""Backbones: shapes, and the GroupNorm encoder computing the same function in train and eval."""

from __future__ import annotations

import torch

from shortcutlab.models import build_model


def test_group_norm_encoder_does_not_depend_on_the_batch_or_the_mode():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 32, 32)
    gn = build_model("small-cnn-gn", 1, 2, image_size=32, feature_dim=8)
    bn = build_model("small-cnn", 1, 2, image_size=32, feature_dim=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    for model in (gn, bn):
        model.train()
    # one image alone or among 15 others; train mode or eval mode: the same logits with GroupNorm
    alone, together = gn(x[:1]), gn(torch.cat([x[:1], x[1:] * 3]))[:1]
    gn.eval()
    evaluated = gn(x[:1])
    assert alone.shape == (1, 2)
    assert torch.allclose(alone, together, atol=1e-5) and torch.allclose(
        alone, evaluated, atol=1e-5
    )
    # batch norm in training mode normalises with the batch's statistics: the other images matter
    assert not torch.allclose(bn(x[:2])[:1], bn(torch.cat([x[:1], x[1:] * 3]))[:1], atol=1e-3)
