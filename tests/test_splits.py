import numpy as np
import pandas as pd
import pytest

from shortcutlab.data.splits import build_splits, cell_probabilities, design_split_cells
from shortcutlab.errors import ShortcutlabError


def _p_agree(df: pd.DataFrame, attr: str) -> float:
    return float((df[attr] == df["y"]).mean())


def test_design_realises_the_correlation_per_split():
    cells = design_split_cells(20000, 2, {"sex": 2, "age": 2}, 0.9)
    meta = cells.loc[cells.index.repeat(cells["count"])]
    for attr in ("sex", "age"):
        assert _p_agree(meta[meta.split == "train"], attr) == pytest.approx(0.9, abs=0.005)
        assert _p_agree(meta[meta.split == "val"], attr) == pytest.approx(0.9, abs=0.01)
        assert _p_agree(meta[meta.split == "inv"], attr) == pytest.approx(0.1, abs=0.01)
        assert _p_agree(meta[meta.split == "bal"], attr) == pytest.approx(0.5, abs=0.01)
    bal = cells[cells.split == "bal"]["count"]
    assert bal.max() - bal.min() <= 1  # every (y, z1, z2) cell the same size
    # the two attributes are independent given y in train (not a single merged factor)
    train = meta[meta.split == "train"]
    assert ((train.sex == train.y) & (train.age != train.y)).mean() == pytest.approx(0.09, abs=0.01)


def test_cell_probabilities_sum_to_one_for_multiclass():
    for split in ("train", "inv", "bal"):
        probs = cell_probabilities(split, 3, {"site": 3}, 0.8)
        assert sum(probs.values()) == pytest.approx(1.0)
    assert cell_probabilities("train", 3, {"site": 3}, 0.8)[(1, 1)] == pytest.approx(0.8 / 3)


def test_build_splits_from_an_uncorrelated_table():
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"y": rng.integers(0, 2, 8000), "sex": rng.integers(0, 2, 8000)})
    meta["row"] = np.arange(len(meta))
    out, report = build_splits(meta, ["sex"], 2, 0.9, seed=1)
    assert out["row"].is_unique  # no row used twice
    assert _p_agree(out[out.split == "train"], "sex") == pytest.approx(0.9, abs=0.01)
    assert _p_agree(out[out.split == "inv"], "sex") == pytest.approx(0.1, abs=0.02)
    counts = report.counts
    assert set(counts.columns) == {"train", "val", "inv", "bal"}
    assert counts["bal"].max() - counts["bal"].min() <= 1
    # the rarest cell is used up: no cell has more rows assigned than it holds
    used = out.groupby(["y", "sex"]).size()
    avail = meta.groupby(["y", "sex"]).size()
    assert (used <= avail).all() and (avail - used).min() <= 4


def test_build_splits_is_deterministic_given_the_seed():
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"y": rng.integers(0, 2, 500), "sex": rng.integers(0, 2, 500)})
    a, _ = build_splits(meta, ["sex"], 2, 0.8, seed=3)
    b, _ = build_splits(meta, ["sex"], 2, 0.8, seed=3)
    c, _ = build_splits(meta, ["sex"], 2, 0.8, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_empty_group_is_a_clear_error():
    meta = pd.DataFrame({"y": [0, 0, 1, 1] * 10, "sex": [0, 1, 1, 1] * 10})
    with pytest.raises(ShortcutlabError, match=r"group y=1,sex=0 has no images"):
        build_splits(meta, ["sex"], 2, 0.9)


def test_too_small_cell_is_a_clear_error():
    meta = pd.DataFrame({"y": [0] * 50 + [1] * 50, "sex": [0] * 49 + [1] + [1] * 49 + [0]})
    with pytest.raises(ShortcutlabError, match="would get only"):
        build_splits(meta, ["sex"], 2, 0.9, min_cell=2)


def test_attribute_with_other_cardinality_is_refused():
    meta = pd.DataFrame({"y": [0, 1] * 30, "age": [0, 1, 2] * 20})
    with pytest.raises(ShortcutlabError, match="has 3 values but the label has 2"):
        build_splits(meta, ["age"], 2, 0.9)
