"""Numbers a user can trust: what loading user data converts, keeps, drops and renumbers is said
in ``ImageTable.notes``, and a training split without a group is refused or warned about."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, write_config, write_csv_dataset
from PIL import Image

from shortcutlab.data.sources import load_csv_dataset, load_npz_dataset
from shortcutlab.data.splits import build_splits
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import MethodSpec, load_config


def _twelve_bit(size: int, seed: int) -> np.ndarray:
    """A 12-bit X-ray-like image: a smooth gradient over 0..4095 with a little noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 4095, size * size).reshape(size, size)
    return np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 4095).astype(np.uint16)


def _write_table(root: Path, images: list[Image.Image]) -> Path:
    """A CSV + PNG folder with a split column; y and site alternate so every group is in train."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        img.save(root / "images" / f"{i}.png")
        split = "train" if i % 8 < 4 else "val"
        rows.append(
            {"path": f"images/{i}.png", "y": i % 2, "site": "AB"[(i // 2) % 2], "split": split}
        )
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


# ---------------------------------------------------------------------------------------------
# 1. 16-bit images
# ---------------------------------------------------------------------------------------------
def test_a_16_bit_png_keeps_its_contrast(tmp_path):
    raw = _twelve_bit(24, 0)
    img = Image.fromarray(raw)
    assert img.mode == "I;16"
    root = _write_table(tmp_path / "d", [img] * 16)
    table = load_csv_dataset(root, attributes=["site"], image_size=24)
    out = table.images[0, 0]
    assert (out == 255).mean() < 0.05  # a plain conversion clipped 94% of it to 255
    assert out.std() > 50
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # brighter stays brighter


def test_the_notes_say_once_what_the_images_went_through(tmp_path):
    images = [Image.fromarray(_twelve_bit(32, i)) for i in range(15)]
    images.append(Image.new("LA", (32, 24), (120, 200)))  # grayscale + alpha, not square
    root = _write_table(tmp_path / "d", images)
    table = load_csv_dataset(root, attributes=["site"], image_size=16)
    notes = table.notes
    depth = [n for n in notes if "16-bit" in n]  # one line for the set, not one per image
    assert len(depth) == 1
    assert depth[0].startswith("images: 15 of 16 16-bit (I;16) scaled to 8 bits by each image's")
    assert any(n.startswith("images: 16 of 16 resized to 16x16") for n in notes)
    assert any("alpha" in n and n.startswith("images: 1 of 16") for n in notes)
    assert any("aspect ratio changed" in n and "15.png, 32x24" in n for n in notes)
    assert table.images.shape == (16, 1, 16, 16)  # LA is read as grayscale, not as RGB


def test_a_16_bit_npz_is_scaled_not_wrapped(tmp_path):
    arrays = {}
    for split, n in (("train", 40), ("val", 20)):
        arrays[f"{split}_images"] = np.stack([_twelve_bit(28, i) for i in range(n)])
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(tmp_path / "d.npz", **arrays)
    table = load_npz_dataset(tmp_path / "d.npz", [], image_size=28)
    raw = arrays["train_images"][0].ravel()
    out = table.images[0, 0].ravel().astype(int)
    assert np.all(np.diff(out[np.argsort(raw, kind="stable")]) >= 0)  # a cast wraps at 256
    assert sum("uint16 images scaled to 8 bits" in n for n in table.notes) == 1


# ---------------------------------------------------------------------------------------------
# 2. the split builder on the user's rows
# ---------------------------------------------------------------------------------------------
def _correlated_rows() -> pd.DataFrame:
    """The issue's case: 200 rows whose own P(site = y) is 0.82 (18 rows in each minority)."""
    y = [0] * 100 + [1] * 100
    site = [0] * 82 + [1] * 18 + [0] * 18 + [1] * 82
    return pd.DataFrame({"y": y, "site": site})


def test_the_split_builder_says_what_it_kept_dropped_and_why():
    meta = _correlated_rows()
    out, report = build_splits(
        meta, ["site"], 2, 0.5, values={"site": ["A", "B"]}, min_group_size=10
    )
    notes = report.notes
    # correlation 0.5 gives every group the same share, so the 18-image groups cap the set
    assert len(out) <= 72
    assert f"split builder: kept {len(out)} of 200 rows (train " in " ".join(notes)
    assert f"dropped {200 - len(out)}" in " ".join(notes)
    limiting = next(n for n in notes if "sets the size of every split" in n)
    assert "groups y=0,site=B and y=1,site=A (18, 18 images)" in limiting
    assert "y=0,site=A 6" in limiting  # 82 of them, 16 kept: the surplus dropped, per group
    assert any("y=0 with site=A, y=1 with site=B" in n for n in notes)  # what z = y means
    small = [n for n in notes if n.startswith("warning: split bal")]
    assert len(small) == 1 and "y=0,site=A 2" in small[0]
    assert "site=0" not in " ".join(notes)  # the user's names, never the codes


def test_bal_groups_are_equal_and_no_group_is_oversubscribed():
    rng = np.random.default_rng(0)  # groups of 44, 45, 46 and 65 rows
    meta = pd.DataFrame({"y": rng.integers(0, 2, 200), "site": rng.integers(0, 2, 200)})
    out, report = build_splits(meta, ["site"], 2, 0.5)
    bal = report.counts["bal"]
    assert bal.min() == bal.max()  # the rarest group lost its bal rows to rounding before
    used = out.groupby(["y", "site"]).size()
    assert (used <= meta.groupby(["y", "site"]).size()).all()


def test_the_error_names_the_group_that_limits_the_split():
    # y=1,site=1 has 10 images; at correlation 0.9 it caps the data at 26 rows, so val gets no
    # y=0,site=1 image: the message must point at y=1,site=1, the group to add images of (it
    # named y=0,site=1, of which there are 100)
    meta = pd.DataFrame(
        {"y": [0] * 200 + [1] * 110, "site": [0] * 100 + [1] * 100 + [0] * 100 + [1] * 10}
    )
    with pytest.raises(
        ShortcutlabError, match=r"uses up group y=1,site=1 \(10 images\).*add images of y=1,site=1"
    ):
        build_splits(meta, ["site"], 2, 0.9)
    with pytest.raises(
        ShortcutlabError, match=r"the val split would get only 0 image\(s\) of group y=0,site=B"
    ):
        build_splits(meta, ["site"], 2, 0.9, values={"site": ["A", "B"]})  # the user's names


def test_labels_that_do_not_start_at_zero_are_renumbered_and_said_so(tmp_path):
    root = write_csv_dataset(tmp_path / "d", n=120, with_split=False)
    meta = pd.read_csv(root / "metadata.csv")
    meta["y"] += 1  # classes 1 and 2
    meta.to_csv(root / "metadata.csv", index=False)
    table = load_csv_dataset(root, attributes=["site"], image_size=16, correlation=0.5)
    assert table.num_classes == 2 and set(table.meta["y"]) == {0, 1}
    assert any("takes the values 1, 2" in n and "1 -> 0, 2 -> 1" in n for n in table.notes)


def test_integer_categories_are_coded_in_numeric_order(tmp_path):
    root = write_csv_dataset(tmp_path / "d", n=60)
    meta = pd.read_csv(root / "metadata.csv")
    meta["site"] = meta["site"].map({"A": 2, "B": 10})
    meta.to_csv(root / "metadata.csv", index=False)
    table = load_csv_dataset(root, attributes=["site"], image_size=16)
    assert table.attribute_values["site"] == [2, 10]  # as strings, "10" came before "2"
    assert (table.meta["site"] == (meta["site"] == 10).astype(int)).all()


def test_min_group_size_is_a_config_option_the_loader_uses(tmp_path):
    root = write_csv_dataset(tmp_path / "d", n=120)
    cfg = load_config(
        write_config(tmp_path / "c.yaml", root), overrides=["dataset.min_group_size=3"]
    )
    few = runner.load_dataset(cfg.dataset).notes
    cfg = load_config(
        write_config(tmp_path / "c.yaml", root), overrides=["dataset.min_group_size=40"]
    )
    many = runner.load_dataset(cfg.dataset).notes
    assert any("splits: taken from the 'split' column (train 60, val 20" in n for n in many)
    warn = [n for n in many if n.startswith("warning: ")]
    assert len(warn) > len([n for n in few if n.startswith("warning: ")])
    assert "(dataset.min_group_size)" in warn[0] and "site=A" in warn[0]
    with pytest.raises(ShortcutlabError, match=r"min_group_size.*greater than or equal to 1"):
        load_config(write_config(tmp_path / "c.yaml", root), overrides=["dataset.min_group_size=0"])


# ---------------------------------------------------------------------------------------------
# 3. an empty training group
# ---------------------------------------------------------------------------------------------
def _without_train_group(root: Path) -> Path:
    """Move the train rows of (y=1, site=B) to val: train has no image of that group."""
    meta = pd.read_csv(root / "metadata.csv")
    gone = (meta["split"] == "train") & (meta["y"] == 1) & (meta["site"] == "B")
    meta.loc[gone, "split"] = "val"
    meta.to_csv(root / "metadata.csv", index=False)
    return root


def test_group_methods_refuse_an_empty_training_group_and_erm_warns(tmp_path):
    root = _without_train_group(write_csv_dataset(tmp_path / "d", n=120))
    cfg = write_config(tmp_path / "c.yaml", root, methods=["erm", "groupdro"])
    cfg = load_config(cfg, overrides=["train.epochs=1", "bootstrap=0"])
    table = runner.load_dataset(cfg.dataset)
    sentence = r"^groupdro needs every \(y, site\) group in train; y=1,site=B has no training image"
    with pytest.raises(ShortcutlabError, match=sentence):
        runner.train_one(table, cfg, MethodSpec(name="groupdro"), 0, tmp_path / "dro")
    for name in ("rebalance", "groupdistil", "dfr"):
        with pytest.raises(ShortcutlabError, match=rf"^{name} needs every \(y, site\) group"):
            runner._prepare(
                table,
                cfg,
                MethodSpec(name=name),
                0,
                runner.RunLayout.single(tmp_path / name, name, 0),
            )
    layout = runner.RunLayout.single(tmp_path / "erm", "erm", 0)
    layout.dir.mkdir(parents=True)
    *_, warnings = runner._prepare(table, cfg, MethodSpec(name="erm"), 0, layout)
    results = runner.train_one(table, cfg, MethodSpec(name="erm"), 0, tmp_path / "erm")
    assert len(results) > 0  # erm runs
    assert len(warnings) == 1 and warnings[0].startswith(
        "warning: erm trains without group y=1,site=B"
    )


def test_the_cli_stops_with_the_sentence_and_split_counts_use_category_names(tmp_path, capsys):
    root = _without_train_group(write_csv_dataset(tmp_path / "d", n=120))
    cfg = write_config(tmp_path / "c.yaml", root, methods=["groupdro", "erm"])
    code, out, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 2
    said = " ".join((out + err).split())
    assert "groupdro needs every (y, site) group in train; y=1,site=B has no training" in said
    counts = pd.read_csv(tmp_path / "out" / "split_counts.csv", index_col=0)
    assert "y=1,site=B" in counts.index  # written when the data was loaded, with the names


def test_a_value_absent_from_train_is_excused():
    from shortcutlab.data.grouping import Grouper, empty_train_groups

    # site C only outside train (a target domain, a held-out site): its groups are not "empty"
    grouper = Grouper(2, ("site",), (3,), {"site": ["A", "B", "C"]})
    train_g = grouper.ids(np.array([0, 0, 1]), np.array([[0], [1], [0]]))
    assert empty_train_groups(train_g, grouper) == ["y=1,site=B"]
