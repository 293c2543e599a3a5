import nibabel
import numpy as np
import pandas as pd
import pytest
from conftest import write_csv_dataset

from shortcutlab.data.sources import load_csv_dataset, load_npz_dataset
from shortcutlab.errors import ShortcutlabError


def _npz(path, with_attr=True, n=400, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in (("train", n), ("val", n // 4), ("test", n // 4)):
        y = rng.integers(0, 2, m)
        arrays[f"{split}_images"] = rng.integers(0, 255, (m, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = y[:, None]
        if with_attr:
            arrays[f"{split}_sex"] = rng.integers(0, 2, m)
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_with_attribute_is_resplit(tmp_path):
    table = load_npz_dataset(_npz(tmp_path / "d.npz"), ["sex"], image_size=32, correlation=0.8)
    assert table.images.shape[1:] == (1, 32, 32)
    assert set(table.splits) == {"train", "val", "inv", "bal"}
    train = table.meta[table.meta.split == "train"]
    assert (train.sex == train.y).mean() == pytest.approx(0.8, abs=0.05)


def test_medmnist_npz_without_attributes_keeps_its_splits(tmp_path):
    table = load_npz_dataset(_npz(tmp_path / "d.npz", with_attr=False), [], image_size=28)
    assert table.splits == ["train", "val", "test"]
    assert len(table) == 600


def test_npz_missing_attribute_array(tmp_path):
    with pytest.raises(ShortcutlabError, match="no array 'train_age'"):
        load_npz_dataset(_npz(tmp_path / "d.npz"), ["age"])


def test_csv_reads_masks_string_categories_and_nifti(tmp_path):
    root = write_csv_dataset(tmp_path / "data", n=60)
    meta = pd.read_csv(root / "metadata.csv")
    vol = np.random.default_rng(0).normal(size=(16, 16, 5)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), root / "images" / "vol.nii.gz")
    meta.loc[0, "path"] = "images/vol.nii.gz"
    meta.to_csv(root / "metadata.csv", index=False)
    table = load_csv_dataset(root, attributes=["site"], image_size=16)
    assert table.masks is not None and table.masks.shape == (60, 16, 16)
    assert table.attribute_values["site"] == ["A", "B"]
    assert set(table.meta["site"]) == {0, 1}
    assert table.images[0].std() > 0  # the NIfTI slice was read and scaled to uint8


def test_csv_split_column_without_val_is_refused(tmp_path):
    root = write_csv_dataset(tmp_path / "data", n=60)
    meta = pd.read_csv(root / "metadata.csv")
    meta["split"] = meta["split"].replace({"val": "train"})
    meta.to_csv(root / "metadata.csv", index=False)
    with pytest.raises(ShortcutlabError, match="needs at least 'train' and 'val'"):
        load_csv_dataset(root, attributes=["site"], image_size=16)
