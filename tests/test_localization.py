"""Heatmap scores against masks (docs/methods.md section 8): hand-computed values and
scikit-learn's roc_auc_score."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.localization import cnr, mass_in_mask, miou, pixel_auroc, score_maps


def test_hand_computed_values():
    heat = np.array([[1.0, 0.8], [0.2, 0.0]])
    mask = np.array([[True, True], [False, False]])
    # inside 1.0, 0.8: mean 0.9 var 0.01; outside 0.2, 0.0: mean 0.1 var 0.01
    assert cnr(heat, mask) == pytest.approx(0.8 / np.sqrt(0.02))
    # >= 0.1..0.2 : {1, .8, .2} IoU 2/3; >= 0.3..0.5: {1, .8} IoU 1
    assert miou(heat, mask) == pytest.approx((2 * 2 / 3 + 3 * 1) / 5)
    assert pixel_auroc(heat, mask) == 1.0
    assert mass_in_mask(heat, mask) == pytest.approx(1.8 / 2.0)
    assert mass_in_mask(-heat, mask) != mass_in_mask(-heat, mask)  # no positive heat: NaN
    assert np.isnan(cnr(heat, np.zeros_like(mask))) and np.isnan(pixel_auroc(heat, mask | True))


def test_auroc_matches_sklearn_and_a_uniform_map_scores_chance():
    rng = np.random.default_rng(0)
    heat = rng.normal(size=(32, 32))
    mask = np.zeros((32, 32), bool)
    mask[8:16, 10:20] = True
    heat[mask] += 0.7
    assert pixel_auroc(heat, mask) == pytest.approx(roc_auc_score(mask.ravel(), heat.ravel()))
    flat = np.ones((32, 32))
    assert pixel_auroc(flat, mask) == 0.5
    assert mass_in_mask(flat, mask) == pytest.approx(mask.mean())
    s = score_maps(np.stack([heat, flat]), np.stack([mask, mask]))
    assert s["mask_share"] == pytest.approx(mask.mean())
    assert s["pixel_auroc"] == pytest.approx((roc_auc_score(mask.ravel(), heat.ravel()) + 0.5) / 2)
    with pytest.raises(ShortcutlabError, match="resize the heatmap"):
        cnr(heat[:16], mask)
