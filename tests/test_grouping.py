"""One grouper (data/grouping.py): the full table's radix in every split, the user's names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import write_config

from shortcutlab.data.grouping import Grouper
from shortcutlab.data.table import ImageTable
from shortcutlab.evaluation.metrics import evaluate_split
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import load_config


def _table() -> ImageTable:
    # site takes 0, 1, 2 in train; val lacks site 2 (its own maximum would give radix 2)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1, 0])
    site = np.array([0, 1, 2, 2, 1, 0, 0, 1, 1, 0])
    split = ["train"] * 6 + ["val"] * 4
    meta = pd.DataFrame({"y": y, "site": site, "scanner": [0, 1] * 5, "split": split})
    images = np.zeros((10, 1, 4, 4), np.uint8)
    return ImageTable(images, meta, ["site", "scanner"], 2, attribute_values={"site": list("ABC")})


def test_a_split_without_an_attributes_top_value_keeps_the_full_tables_radix():
    table = _table()
    val = table.split("val")
    assert val.meta["site"].max() == 1
    assert val.attribute_cardinalities() == [3, 2]
    m = val.meta
    expected = (m["y"] * 3 + m["site"]) * 2 + m["scanner"]  # mixed radix (2, 3, 2)
    assert val.group_ids().tolist() == expected.tolist()
    assert val.tensors()["g"].tolist() == expected.tolist()
    # the same row has the same id in the full table and in its split
    full = table.group_ids()
    assert full[table.meta["split"] == "val"].tolist() == expected.tolist()
    info = runner.task_info(table, load_config(overrides=["train.epochs=1"]), 1)
    assert info.num_groups == 12 == table.grouper.num_groups
    assert int(val.tensors()["g"].max()) < info.num_groups


def test_groups_are_named_with_the_users_categories():
    g = Grouper(2, ("site", "scanner"), (3, 2), {"site": ["A", "B", "C"]})
    names = g.names()
    assert len(names) == g.num_groups == 12
    assert names[0] == "y=0,site=A,scanner=0" and names[-1] == "y=1,site=C,scanner=1"
    # a name sits at its id
    ids = g.ids(np.array([1]), np.array([[2, 0]]))
    assert names[int(ids[0])] == "y=1,site=C,scanner=0"
    assert g.pair_ids(np.array([1, 0]), np.array([[2, 0], [1, 1]]), 0).tolist() == [5, 1]
    rows = evaluate_split(
        "val",
        np.array([[0.9, 0.1], [0.2, 0.8]]),
        np.array([0, 1]),
        np.array([[0, 1], [2, 0]]),
        g,
        n_boot=0,
    )
    named = {r["metric"] for r in rows if r["metric"].startswith("group_accuracy")}
    assert named == {"group_accuracy[y=0,site=A,scanner=1]", "group_accuracy[y=1,site=C,scanner=0]"}


def test_a_csv_run_reports_groups_by_the_csvs_category_names(csv_dataset, tmp_path):
    cfg = load_config(write_config(tmp_path / "cfg.yaml", csv_dataset, train={"epochs": 1}))
    table = runner.load_dataset(cfg.dataset)
    assert table.attribute_values["site"] == ["A", "B"]
    res = runner.train_one(table, cfg, cfg.methods[0], 0, tmp_path / "run")
    groups = set(res.loc[res["metric"].str.startswith("group_accuracy"), "metric"])
    assert "group_accuracy[y=1,site=B]" in groups
    assert not any("site=0" in g or "site=1" in g for g in groups)


def test_grouper_rejects_mismatched_cardinalities():
    with pytest.raises(ValueError, match="one cardinality per attribute"):
        Grouper(2, ("site",), (2, 3))
