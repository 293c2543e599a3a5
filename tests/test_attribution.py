"""Attribution maps (captum Grad-CAM, Integrated Gradients) scored against masks
(docs/methods.md section 8)."""

import numpy as np
import pytest
import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.attribution import attribution_maps, attribution_rows
from shortcutlab.evaluation.localization import score_maps
from shortcutlab.models.backbones import build_model

SQUARE = (slice(4, 12), slice(18, 26))


class _ReadsTheSquare(nn.Module):
    """A constructed classifier whose class-1 logit is the brightness inside a fixed square."""

    def __init__(self):
        super().__init__()
        weight = torch.zeros(1, 1, 32, 32)
        weight[..., SQUARE[0], SQUARE[1]] = 1.0
        self.register_buffer("weight", weight)
        self.encoder = nn.Sequential(nn.Conv2d(1, 1, 1))
        nn.init.ones_(self.encoder[0].weight)
        nn.init.zeros_(self.encoder[0].bias)

    def forward(self, x):
        s = self.encoder(x * self.weight).mean(dim=(1, 2, 3))
        return torch.stack([-s, s], dim=1)


@pytest.mark.parametrize("method", ["gradcam", "ig"])
def test_a_model_that_reads_a_square_is_seen_looking_at_it(method):
    rng = np.random.default_rng(0)
    images = rng.integers(20, 235, size=(6, 1, 32, 32)).astype(np.uint8)
    mask = np.zeros((6, 32, 32), bool)
    mask[:, SQUARE[0], SQUARE[1]] = True
    maps = attribution_maps(_ReadsTheSquare(), images, method)
    assert maps.shape == (6, 32, 32)
    s = score_maps(maps, mask)
    assert s["mass_in_mask"] > 0.9 > s["mask_share"]
    assert s["pixel_auroc"] > 0.95


def test_rows_on_a_phantom_and_bad_input(small_derm):
    table = small_derm
    model = build_model("small-cnn", 3, 2, 32, 16)
    rows = attribution_rows(model, table, ["gradcam", "ig"], max_images=8)
    got = {(r["target"], r["metric"]): r["value"] for r in rows}
    for f in ("y", "ruler"):
        for m in ("gradcam", "ig"):
            assert 0.0 <= got[(f, f"attribution_mass[{m}]")] <= 1.0
        assert 0.0 < got[(f, "factor_mask_share")] < 1.0
    with pytest.raises(ShortcutlabError, match="unknown attribution method 'shap'"):
        attribution_rows(model, table, ["shap"])
