"""The data pipeline: the disk-backed image cache, views of its splits, the DataLoader path
(workers, augmentation) and the CUDA settings (decided and checked on CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_csv_dataset
from torch import nn

from shortcutlab.data import cache, sources
from shortcutlab.data import table as table_module
from shortcutlab.data.augment import augment_spec
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.context import Context, tensors_of
from shortcutlab.experiment.loader import DeviceSettings, Feed, device_settings
from shortcutlab.methods.base import TaskInfo
from shortcutlab.store.layout import RunLayout


@pytest.fixture
def counted_reads(monkeypatch):
    """Counts the images ``load_csv_dataset`` decodes."""
    calls = [0]
    real = sources._read_image

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "_read_image", counting)
    return calls


@pytest.fixture
def shuffled_csv(tmp_path, monkeypatch) -> Path:
    """60 rows whose splits are interleaved in the CSV, and a cache of this test's own."""
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    root = write_csv_dataset(tmp_path / "data", n=60, size=16)
    csv = root / "metadata.csv"
    import pandas as pd

    df = pd.read_csv(csv)
    df.sample(frac=1.0, random_state=0).to_csv(csv, index=False)
    return root


def _load(root: Path, image_size: int = 16):
    return sources.load_csv_dataset(root, attributes=["site"], image_size=image_size)


def test_cache_is_built_once_and_reused(shuffled_csv, counted_reads):
    first = _load(shuffled_csv)
    assert counted_reads[0] == 60
    second = _load(shuffled_csv)
    assert counted_reads[0] == 60  # nothing decoded the second time
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert first.notes == second.notes  # the decode's notes come back from the sidecar
    assert len(list((shuffled_csv.parent / "cache").glob("images-*.npy"))) == 1


def test_rows_are_grouped_by_split_keeping_each_splits_order(shuffled_csv):
    import pandas as pd

    table = _load(shuffled_csv)
    df = pd.read_csv(shuffled_csv / "metadata.csv")
    codes = pd.factorize(table.meta["split"])[0]
    assert (np.diff(codes) >= 0).all()  # one block per split
    for split in ("train", "val", "inv", "bal"):
        assert table.split(split).meta["path"].tolist() == df[df.split == split].path.tolist()


def test_cache_key_follows_files_and_size(tmp_path):
    paths = [tmp_path / f"{i}.bin" for i in range(3)]
    for p in paths:
        p.write_bytes(b"abc")
    key = cache.cache_key("images", paths, {"image_size": 16})
    assert cache.cache_key("images", paths, {"image_size": 16}) == key
    assert cache.cache_key("images", paths, {"image_size": 32}) != key
    assert cache.cache_key("images", paths[::-1], {"image_size": 16}) != key
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    touched = cache.cache_key("images", paths, {"image_size": 16})
    assert touched != key
    paths[2].write_bytes(b"abcd")  # another size
    assert cache.cache_key("images", paths, {"image_size": 16}) not in (key, touched)


def test_changed_image_and_size_are_decoded_again(shuffled_csv, counted_reads):
    _load(shuffled_csv)
    _load(shuffled_csv, image_size=8)
    assert counted_reads[0] == 120
    img = shuffled_csv / "images" / "3.png"
    st = os.stat(img)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _load(shuffled_csv)
    assert counted_reads[0] == 180


def test_interrupted_build_leaves_no_finished_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path / "cache"))
    paths = [tmp_path / f"{i}.bin" for i in range(10)]
    for p in paths:
        p.write_bytes(b"x")

    def read(i: int) -> np.ndarray:
        if i == 6:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the decode
        return np.full((1, 4, 4), i, np.uint8)

    with pytest.raises(KeyboardInterrupt):
        cache.cached_array("images", paths, {}, read)
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, no temporary file
    arr, _ = cache.cached_array("images", paths, {}, lambda i: np.full((1, 4, 4), i, np.uint8))
    assert arr[:, 0, 0, 0].tolist() == list(range(10))


def test_corrupt_cache_file_is_rebuilt(shuffled_csv, counted_reads):
    first = np.array(_load(shuffled_csv).images)
    (entry,) = (shuffled_csv.parent / "cache").glob("images-*.npy")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # a short file
    again = _load(shuffled_csv)
    assert counted_reads[0] == 120
    np.testing.assert_array_equal(again.images, first)
    entry.write_bytes(b"not an npy file")
    np.testing.assert_array_equal(_load(shuffled_csv).images, first)
    assert counted_reads[0] == 180


def test_splits_and_tensors_of_a_cached_table_are_views(shuffled_csv):
    table = _load(shuffled_csv)
    train = table.split("train")
    assert np.shares_memory(train.images, table.images)
    assert np.shares_memory(train.masks, table.masks)
    x = tensors_of(train)["x"]
    assert np.shares_memory(x.numpy(), table.images)
    # a scattered selection of a memory-mapped table is a copy (on disk when large)
    scattered = train.select(np.arange(0, len(train), 2))
    assert not np.shares_memory(scattered.images, table.images)
    np.testing.assert_array_equal(scattered.images, train.images[::2])


def test_large_scattered_selection_is_copied_to_disk(shuffled_csv, monkeypatch):
    table = _load(shuffled_csv)
    monkeypatch.setattr(table_module, "SPILL_BYTES", 1024)
    rows = np.array([5, 1, 40, 7, 22, 3, 59])
    part = table.select(rows)
    assert isinstance(part.images, np.memmap)
    np.testing.assert_array_equal(part.images, np.asarray(table.images)[rows])
    assert not list((shuffled_csv.parent / "cache").glob(".rows-*"))  # unlinked at once


def test_cache_pages_are_released_while_batches_are_read(shuffled_csv, monkeypatch, tmp_path):
    table = _load(shuffled_csv)
    want = np.array(table.split("train").images)
    monkeypatch.setattr(cache, "RELEASE_BYTES", 2048)  # a release every 8 images of 16 x 16
    released = [0]
    real = cache.release_pages

    def counting() -> None:
        released[0] += 1
        real()

    monkeypatch.setattr(cache, "release_pages", counting)
    ctx = _context(tmp_path, n=4)
    train = tensors_of(table.split("train"))
    got = torch.cat([b["x"] for b in ctx.batches(train, shuffle=False)])
    assert released[0] >= len(want) // 8 - 1
    np.testing.assert_array_equal((got * 255).round().byte().numpy(), want)  # data intact


# ---------------------------------------------------------------------------------------------
# the DataLoader path
def _context(tmp_path: Path, n: int = 70, **kw) -> Context:
    info = TaskInfo(num_classes=2, attributes=["z"], attribute_cardinalities=[2], image_size=16)
    g = torch.Generator().manual_seed(0)
    tensors = {
        "x": torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8, generator=g),
        "y": torch.randint(0, 2, (n,), generator=g),
        "z": torch.randint(0, 2, (n, 1), generator=g),
        "idx": torch.arange(n),
    }
    tensors["g"] = tensors["y"] * 2 + tensors["z"][:, 0]
    return Context(
        train=tensors,
        val=tensors,
        info=info,
        layout=RunLayout.single(tmp_path / "run", "m", 0),
        device=torch.device("cpu"),
        seed=3,
        batch_size=16,
        precise_bn=0,
        **kw,
    )


class Recorder(nn.Module):
    """A method that records what ``fit`` feeds it."""

    sampling = "uniform"

    def __init__(self, sampling: str = "uniform"):
        super().__init__()
        self.sampling = sampling
        self.seen: list[dict[str, torch.Tensor]] = []

    def update(self, batch):
        self.seen.append({k: v.clone() for k, v in batch.items()})
        return {"loss": 0.0}


def _fit(ctx: Context, sampling: str = "uniform", epochs: int = 2):
    rec = Recorder(sampling)
    ctx.fit(rec, epochs, seed=5)
    return rec.seen


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("sampling", ["uniform", "group_balanced"])
def test_loader_gives_the_in_memory_batches(tmp_path, sampling):
    plain = _fit(_context(tmp_path), sampling)
    assert _same(_fit(_context(tmp_path, num_workers=2), sampling), plain)
    # the DataLoader itself, with no worker process
    ctx = _context(tmp_path)
    gen = torch.Generator().manual_seed(5)
    feed = Feed(ctx.train, ctx.move, workers=0, pin=False)
    weights = ctx.sampling_weights(Recorder(sampling), ctx.train)
    batches = [b for _ in range(2) for b in feed.epoch(ctx.plan(70, True, weights, None, gen))]
    assert _same(batches, plain)


def test_eval_batches_through_workers_are_the_same(tmp_path):
    ctx, workers = _context(tmp_path), _context(tmp_path, num_workers=2)
    a = list(ctx.batches(ctx.val, shuffle=False, batch_size=32))
    b = list(workers.batches(workers.val, shuffle=False, batch_size=32))
    assert _same(a, b) and len(a) == 3


def test_augment_changes_training_batches_only_reproducibly(tmp_path):
    # MONAI transforms run one image at a time: few images here (importing MONAI is most of it)
    plain = _fit(_context(tmp_path, n=34))
    standard = _fit(_context(tmp_path, n=34, augment=augment_spec("standard")), epochs=1)
    assert [b["idx"].tolist() for b in standard] == [b["idx"].tolist() for b in plain[:3]]
    assert not torch.equal(standard[0]["x"], plain[0]["x"])
    assert all(0.0 <= float(b["x"].min()) and float(b["x"].max()) <= 1.0 for b in standard)
    light = augment_spec({"flip": {}, "intensity": {"prob": 1.0}})
    aug = _fit(_context(tmp_path, n=34, augment=light))
    assert [b["idx"].tolist() for b in aug] == [b["idx"].tolist() for b in plain]
    assert _same(_fit(_context(tmp_path, n=34, augment=light)), aug)  # the seed decides
    assert _same(_fit(_context(tmp_path, n=34, augment=light, num_workers=2)), aug)
    ctx = _context(tmp_path, augment=light)  # evaluation batches are never augmented
    evaluated = list(ctx.batches(ctx.val, shuffle=False))
    assert torch.equal(evaluated[0]["x"], ctx.val["x"][:16].float() / 255.0)


def test_augment_config_names_are_checked():
    cfg = load_config(preset="quick")
    assert cfg.train.augment == "none" and cfg.train.num_workers == 0
    assert augment_spec(cfg.train.augment) == {}
    cfg = load_config(overrides=["train.augment={flip: {prob: 1}, rotate: {}}"])
    assert augment_spec(cfg.train.augment)["flip"]["prob"] == 1.0
    for bad in ("train.augment=heavy", "train.augment={blur: {}}", "train.augment={flip: {p: 1}}"):
        with pytest.raises(ShortcutlabError, match="augment"):
            load_config(overrides=[bad])


def test_device_settings():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert device_settings(cpu, amp=True, bf16=False) == DeviceSettings(False, False, False)
    assert device_settings(cpu, amp=True, bf16=True).autocast_bf16
    assert device_settings(cuda, amp=True, bf16=False) == DeviceSettings(True, True, True)
    assert device_settings(cuda, amp=False, bf16=False) == DeviceSettings(False, False, True)
    assert device_settings(cuda, amp=False, bf16=True).autocast_bf16


def test_channels_last_keeps_the_outputs(tmp_path):
    from shortcutlab.models import build_model

    torch.manual_seed(0)
    model = build_model("small-cnn", 1, 2, 16, 8).eval()
    ctx = _context(tmp_path, channels_last=True)
    batch = next(ctx.batches(ctx.val, shuffle=False))
    assert batch["x"].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = model(batch["x"].contiguous())
        got = model.to(memory_format=torch.channels_last)(batch["x"])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
