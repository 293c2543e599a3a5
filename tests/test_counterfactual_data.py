"""The phantoms' exact counterfactuals and factor masks (docs/methods.md section 8)."""

import numpy as np
import pytest
from conftest import small_phantom

from shortcutlab.data.counterfactual import (
    exact_factors,
    has_exact_counterfactuals,
    true_counterfactual,
    true_factor_masks,
)
from shortcutlab.data.sources import make_synthetic
from shortcutlab.errors import ShortcutlabError


@pytest.fixture(scope="module")
def cxr():
    return small_phantom("synth-cxr", ["site"], size=200, seed=4)


@pytest.mark.parametrize("name", ["synth-cxr", "synth-derm", "synth-mri"])
def test_counterfactual_differs_only_where_the_factor_draws(name):
    table = make_synthetic(
        name, size=150, attributes=None, correlation=0.9, seed=1, image_size=32, use_cache=False
    )
    sub = table.select(np.arange(3, 150, 7))  # rows from several render chunks, out of order
    for factor in exact_factors(table):
        cf = true_counterfactual(sub, factor)
        again = true_counterfactual(sub, factor, sub.meta[factor].to_numpy())
        assert (again == sub.images).all()  # setting the factor to its own value: the source
        masks = true_factor_masks(sub, factor)
        assert masks.any(axis=(1, 2)).all()  # every factor draws something in every image
        if factor in ("site", "dataset"):
            continue  # scanners also change the noise level everywhere; checked below
        diff = (cf != sub.images).any(axis=1)
        assert not (diff & ~masks).any(), f"{factor} changed pixels outside its mask"


def test_local_factors_are_small_and_where_they_are_drawn(cxr):
    sub = cxr.select(np.arange(40))
    site = true_factor_masks(sub, "site")
    assert site.mean() < 0.08
    h = site.shape[-1]
    assert site[:, : h // 2, : h // 2].sum() == site.sum()  # the marker: top-left corner
    eff = true_factor_masks(sub, "y")
    assert eff.mean() < 0.1
    assert not (eff & ~sub.masks).any()  # the effusion lies inside the lungs (the ROI)
    sex = true_factor_masks(sub, "sex")
    assert sex.mean() > 0.3  # body habitus: a global factor


def test_flipping_the_site_changes_the_marker(cxr):
    sub = cxr.select(np.flatnonzero(cxr.meta["site"].to_numpy() == 0)[:10])
    cf = true_counterfactual(sub, "site").astype(int)
    mask = true_factor_masks(sub, "site")
    src = sub.images.astype(int)
    inside = np.abs(cf - src)[:, 0][mask].mean()
    outside = np.abs(cf - src)[:, 0][~mask].mean()
    assert inside > 5 * outside  # the marker dominates; outside only the noise level moves


def test_user_data_and_bad_factors_say_so(cxr, tmp_path):
    from shortcutlab.data.table import ImageTable

    plain = ImageTable(
        cxr.images[:4],
        cxr.meta.iloc[:4].drop(columns="render_row"),
        cxr.attributes,
        2,
        name="mydata",
    )
    assert not has_exact_counterfactuals(plain)
    with pytest.raises(ShortcutlabError, match="no exact counterfactuals"):
        true_counterfactual(plain, "site")
    with pytest.raises(ShortcutlabError, match="no factor 'ruler'"):
        true_factor_masks(cxr, "ruler")
