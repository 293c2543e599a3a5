"""MaskMedPaint: the generated set keeps every ROI pixel, round-trips as CSV, is cached; the
generate command and the generation/mixing methods run end to end."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, write_config, write_csv_dataset
from PIL import Image

import shortcutlab.generative.maskmedpaint as mmp
import shortcutlab.methods.maskmedpaint as mmp_method
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import load_config
from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.models import build_model

TINY = {
    "autoencoder_steps": 2,
    "stage1_steps": 4,
    "stage2_steps": 2,
    "n_target": 8,
    "num_per_image": 1,
    "sample_steps": 3,
    "latent": False,
    "diffusion_batch_size": 16,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def toy_source(n: int = 24, size: int = 16):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 4:11, 5:12] = True
    meta = pd.DataFrame({"y": np.arange(n) % 2, "site": (np.arange(n) // 2) % 2})
    return images, masks, meta


def tiny_params(**gen):
    diffusion = mmp.DiffusionParams(
        latent=False,
        stage1_steps=3,
        stage2_steps=2,
        n_target=4,
        batch_size=8,
        unet_channels=(8, 16, 16),
    )
    return diffusion, mmp.GenerationParams(steps=3, **gen)


def test_generated_set_keeps_roi_exact_round_trips_and_is_cached(tmp_path, monkeypatch):
    images, masks, meta = toy_source()
    diffusion, generation = tiny_params(num_per_image=2, strength=[1.0, 0.6], guidance=[2.0])
    args = (images, meta, masks, ["site"], "site", 1, "maskmedpaint", diffusion, generation)
    table = mmp.build_generated_set(*args, tmp_path / "set", tmp_path / "model", 2, seed=0)
    source_rows = np.flatnonzero(meta["site"].to_numpy() != 1)
    assert len(table) == 2 * len(source_rows)
    for col in ("path", "y", "site", "mask", "source_image", "seed", "strength", "guidance"):
        assert col in table.meta.columns
    assert (table.meta["site"] == 1).all()
    assert sorted(set(table.meta["strength"])) == [0.6, 1.0]
    assert table.meta["seed"].is_unique
    rows = table.meta["source_row"].to_numpy().copy()
    assert (table.meta["y"].to_numpy() == meta["y"].to_numpy()[rows]).all()
    gen = torch.from_numpy(table.images)
    for i, r in enumerate(rows):  # ROI pixel-exact in the PNGs read back, for every image
        roi = masks[r].expand_as(images[r])
        assert (gen[i][roi].int() - images[r][roi].int()).abs().max() == 0
        assert not torch.equal(gen[i][~roi], images[r][~roi])
    assert (table.masks == masks[rows].numpy()).all()

    def refit(*_a, **_k):
        raise AssertionError("the cached set should have been reused")

    monkeypatch.setattr(mmp, "fit_generator", refit)
    again = mmp.build_generated_set(*args, tmp_path / "set", tmp_path / "model", 2, seed=0)
    assert np.array_equal(again.images, table.images)
    # A new generation setting reuses the saved model (no refit) and writes a new set; here
    # composable guidance over several sampler batches.
    generation = dataclasses.replace(generation, class_guidance=1.0, batch_size=3)
    other = mmp.build_generated_set(
        images,
        meta,
        masks,
        ["site"],
        "site",
        1,
        "img2img",
        diffusion,
        generation,
        tmp_path / "img2img",
        tmp_path / "model",
        2,
        seed=0,
    )
    assert (other.meta["strength"] == 0.5).all() and (other.meta["generator"] == "img2img").all()
    assert (other.meta["class_guidance"] == 1.0).all() and len(other) == len(table)
    assert "class_guidance" not in table.meta.columns


def test_text2img_samples_whole_images(tmp_path):
    images, masks, meta = toy_source()
    diffusion, generation = tiny_params(guidance=[7.5], class_guidance=2.0, batch_size=3)
    table = mmp.build_generated_set(
        images,
        meta,
        masks,
        ["site"],
        "site",
        1,
        "text2img",
        diffusion,
        generation,
        tmp_path / "set",
        tmp_path / "model",
        2,
    )
    rows = table.meta["source_row"].to_numpy().copy()
    roi = torch.from_numpy(table.masks)[:, None].expand(-1, 3, -1, -1)
    assert not torch.equal(torch.from_numpy(table.images)[roi], images[rows][roi])


def test_dataclass_defaults_are_the_method_defaults():
    """``shortcutlab run`` / ``generate`` (the registry defaults) and ``DiffusionParams()`` /
    ``GenerationParams()`` mean the same settings, e.g. guidance 3.0."""
    from shortcutlab.methods.maskmedpaint import MaskMedPaint, generation_params

    defaults = MaskMedPaint.hparam_defaults()
    assert generation_params(defaults, seed=0) == (mmp.DiffusionParams(), mmp.GenerationParams())
    assert mmp.GenerationParams().guidance == defaults["guidance"] == [3.0]


def test_domain_split_needs_both_domains():
    with pytest.raises(ShortcutlabError, match="target rows"):
        mmp.split_domains(np.zeros(10, int), 1, 5, 0)


def test_generate_command_writes_a_loadable_dataset(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=120)
    cfg = write_config(tmp_path / "cfg.yaml", root, hparams={"maskmedpaint": TINY})
    out = tmp_path / "gen"
    code, _, err = run_cli(["generate", "maskmedpaint", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    assert Image.open(out / "grid.png").size[0] > 100  # source / ROI / generated grid
    table = mmp.load_generated(out, ["site"])
    assert len(table) > 0 and (out / "model" / "unet").is_dir()
    for i in range(len(table)):  # the ROI equals the source PNG's
        src = np.asarray(Image.open(root / table.meta["source_image"][i]))
        roi = table.masks[i]
        assert np.array_equal(table.images[i, 0][roi], src[roi])
    code, _, err = run_cli(["generate", "diffusion", cfg, "--out", out, "--quiet"], capsys)
    assert code == 2 and "unknown generator" in err


def test_run_with_generative_and_mixing_methods(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=120)
    tiny = {**TINY, "cache": str(tmp_path / "cache")}
    cfg = write_config(
        tmp_path / "cfg.yaml",
        root,
        methods=["erm", "maskmedpaint", "img2img", "cutmix", "mixup", "oracle"],
        hparams={"maskmedpaint": tiny, "img2img": tiny},
        train={"epochs": 1, "batch_size": 32, "feature_dim": 16},
    )
    code, _, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    methods = {"erm", "maskmedpaint", "img2img", "cutmix", "mixup", "oracle"}
    assert set(results["method"]) == methods

    def samples(method):
        done = json.loads((tmp_path / "out" / method / "seed_0" / "done.json").read_text())
        return done["compute"]["samples"]

    # one epoch: the generated copies are trained on; the oracle's target rows are repeated
    # whole up to ERM's number of samples
    meta = pd.read_csv(root / "metadata.csv")
    train_site = meta.loc[meta["split"] == "train", "site"]
    n_source, n_target = int((train_site == "A").sum()), int((train_site == "B").sum())
    n_train = samples("erm")
    assert n_train == n_source + n_target
    assert samples("maskmedpaint") > n_train and samples("img2img") > n_train
    assert n_train <= samples("oracle") < 2 * n_train
    assert samples("oracle") % n_target == 0  # whole copies of the target (site B) rows
    assert len(list((tmp_path / "cache").glob("model-*"))) == 1  # one model, two generated sets
    # the source / ROI / generated grids reach the report
    grids = sorted(p.name for p in (tmp_path / "out" / "figures").glob("generated_*.png"))
    assert grids == ["generated_img2img_seed0.png", "generated_maskmedpaint_seed0.png"]
    assert "generated maskmedpaint seed0" in (tmp_path / "out" / "report.html").read_text()
    assert len(list((tmp_path / "cache").glob("*-*/metadata.csv"))) == 2
    report = json.loads(
        (tmp_path / "out" / "maskmedpaint" / "seed_0" / "generated.json").read_text()
    )
    # one copy of every source-domain (site A) training row, and those copies are exactly the
    # rows trained on beyond ERM's
    assert report["n_generated"] == n_source == samples("maskmedpaint") - n_train
    assert report["rendered"] is False  # a pixel-space model renders nothing
    bad = write_config(
        tmp_path / "bad.yaml",
        root,
        methods=["maskmedpaint"],
        hparams={"maskmedpaint": {**tiny, "domain": "scanner"}},
    )
    code, _, err = run_cli(["run", bad, "--out", tmp_path / "bad", "--quiet"], capsys)
    assert code == 2 and "domain attribute 'scanner'" in err


def test_domain_classifier_scores_backgrounds_not_the_roi():
    from shortcutlab.generative.domain_check import domain_target_rate

    g = torch.Generator().manual_seed(0)
    n, size = 96, 16
    domain = torch.arange(n) % 2
    real = (
        40
        + 120 * domain[:, None, None, None]
        + torch.randint(0, 30, (n, 3, size, size), generator=g)
    )
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    real = real.to(torch.uint8)
    # Generated: target-bright background but a dark (source-like) ROI; the ROI must not matter.
    fake = torch.full((20, 3, size, size), 175, dtype=torch.uint8)
    fake[:, :, 4:12, 4:12] = 40
    score = domain_target_rate(real, domain, masks, fake, masks[:20], target=1, epochs=40)
    assert score["real_accuracy"] > 0.9 and score["target_rate"] > 0.8
    dark = torch.full((20, 3, size, size), 50, dtype=torch.uint8)
    assert domain_target_rate(real, domain, masks, dark, masks[:20], epochs=40)["target_rate"] < 0.2


def test_domain_classifier_judges_through_the_generators_rendering():
    """Real target images are noisy and bright, source ones smooth and dark, 1 target in 11.

    A generator that renders smoothly (a blur here, an autoencoder in practice) and gets the
    brightness right is called source by a classifier of the raw images, and target once the
    real images pass through the same rendering."""
    from shortcutlab.generative.domain_check import domain_target_rate

    def blur(x):
        return F.avg_pool2d(x.float(), 3, 1, 1, count_include_pad=False).round().to(torch.uint8)

    g = torch.Generator().manual_seed(0)
    n, size = 110, 16
    domain = (torch.arange(n) % 11 == 0).long()
    base = 60 + 50 * domain[:, None, None, None] + torch.randint(0, 20, (n, 1, 1, 1), generator=g)
    noise = torch.randint(-40, 41, (n, 3, size, size), generator=g) * domain[:, None, None, None]
    real = (base + noise).clamp(0, 255).to(torch.uint8)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 6:10, 6:10] = True
    fake = blur(real[domain == 1].repeat(2, 1, 1, 1))
    args = (real, domain, masks, fake, masks[: len(fake)])
    raw = domain_target_rate(*args, target=1, epochs=20)
    rendered = domain_target_rate(*args, target=1, epochs=20, render=blur)
    assert raw["real_accuracy"] > 0.9 and raw["target_rate"] < 0.2
    assert rendered["real_accuracy"] > 0.9 and rendered["target_rate"] > 0.8
    assert rendered["raw_target_rate"] > 0.8  # still knows unrendered real target images


SHIFT = {"attribute": "site", "size": 40, "unlabelled": 24, "fixed": {"ruler": 0}}


def test_domain_shift_dataset_keeps_the_domains_apart(_private_cache):
    from shortcutlab.data.sources import make_synthetic

    table = make_synthetic(
        "synth-derm", 200, ["ruler"], 0.9, image_size=16, target_domain={**SHIFT, "source": 0}
    )
    meta = table.meta
    source = meta[meta.split.isin(["train", "val", "inv", "bal"])]
    assert len(source) == 200 and (source.site == 0).all()
    train = meta[meta.split == "train"]
    assert (train.ruler == train.y).mean() == pytest.approx(0.9, abs=0.03)  # the shortcut
    target = meta[meta.split.isin(["target", "target_unlabelled"])]
    assert (meta.split == "target").sum() == 40 and (meta.split == "target_unlabelled").sum() == 24
    assert (target.site == 1).all() and (target.ruler == 0).all()
    assert target.y.mean() == pytest.approx(0.5, abs=0.01)  # both classes, balanced
    with pytest.raises(ShortcutlabError, match="remove it from dataset.attributes"):
        make_synthetic("synth-derm", 200, ["ruler", "site"], 0.9, target_domain=SHIFT)
    with pytest.raises(ShortcutlabError, match="not an attribute"):
        make_synthetic("synth-derm", 200, ["ruler"], 0.9, target_domain={"attribute": "scanner"})


def test_run_on_a_domain_shift_uses_unlabelled_target_images(tmp_path, capsys, _private_cache):
    import yaml

    cfg = tmp_path / "shift.yaml"
    # a latent model with composable guidance: the domain check renders through its autoencoder
    tiny = {
        **TINY,
        "cache": str(tmp_path / "cache"),
        "domain": "site",
        "n_target": 24,
        "latent": True,
        "class_guidance": 1.0,
    }
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "name": "synth-derm",
                    "size": 160,
                    "image_size": 16,
                    "attributes": ["ruler"],
                    "target_domain": SHIFT,
                },
                "methods": ["erm", "maskmedpaint", "oracle"],
                "bootstrap": 0,
                "train": {"epochs": 1, "batch_size": 32, "feature_dim": 16},
                "hparams": {"maskmedpaint": tiny, "oracle": {"domain": "site"}},
            }
        )
    )
    code, _, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    config = load_config(cfg)
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert "target" in set(results["split"]) and "target_unlabelled" not in set(results["split"])

    def samples(method):
        done = json.loads((tmp_path / "out" / method / "seed_0" / "done.json").read_text())
        return done["compute"]["samples"]

    # the 24 labelled target rows, repeated whole up to ERM's number of samples
    assert samples("oracle") == -(-samples("erm") // 24) * 24
    assert samples("maskmedpaint") == 2 * samples("erm")  # one generated copy per source image
    report = json.loads(
        (tmp_path / "out" / "maskmedpaint" / "seed_0" / "generated.json").read_text()
    )
    assert report["n_generated"] == samples("erm")
    assert report["rendered"]  # a latent model: the domain check sees images through it
    assert "raw_target_rate" in report  # real target images were held out and scored
    # the copies come from the labelled training (source) rows, with their labels, and carry
    # the target domain: none is made from an unlabelled target image (whose label is unknown)
    generated = pd.read_csv(next((tmp_path / "cache").glob("maskmedpaint-*/metadata.csv")))
    train_y = runner.load_dataset(config.dataset).split("train").meta["y"].to_numpy()
    rows = generated["source_row"].to_numpy()
    assert sorted(rows) == list(range(len(train_y)))  # one copy of every training row
    assert (generated["y"].to_numpy() == train_y[rows]).all() and (generated["site"] == 1).all()
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert re.search(r"\|\s+target acc\s+\|", summary)  # a column of the headline table


# -- which labelled rows the oracle and the generative methods read ------------------------------


def _rows(n: int, first_id: int, site: int, size: int = 16) -> dict[str, torch.Tensor]:
    """``n`` training-format rows, both classes alternating; pixel (0, 0) holds a row id so
    the rows a method returns can be traced back."""
    g = torch.Generator().manual_seed(first_id)
    x = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(first_id, first_id + n, dtype=torch.uint8)
    y = torch.arange(n) % 2
    z = torch.full((n, 1), site)
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    return {"x": x, "y": y, "z": z, "g": y * 2 + site, "idx": torch.arange(n), "mask": mask}


def _cat(*parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    out["idx"] = torch.arange(len(out["y"]))
    return out


def _ids(rows: dict[str, torch.Tensor]) -> torch.Tensor:
    return rows["x"][:, 0, 0, 0].long()


def _context(tmp_path, train, unlabelled=None):
    """What ``training_data`` reads of the runner's context (methods/base.py ``RunContext``)."""
    run_dir = tmp_path / "exp" / "method" / "seed_0"
    run_dir.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(train=train, unlabelled=unlabelled, seed=0, run_dir=run_dir)


def _build(name: str, attributes: list[str], **hp):
    cls = get_method(name)
    info = TaskInfo(2, attributes, [2] * len(attributes), in_channels=1, image_size=16)
    model = build_model("small-cnn", 1, 2, 16, 8)
    return cls(model, info, {**cls.hparam_defaults(), **hp})


def test_oracle_trains_on_the_labelled_target_rows_of_the_training_split_only(tmp_path):
    source, target = _rows(20, 0, site=0), _rows(6, 100, site=1)
    train = _cat(source, target)
    oracle = _build("oracle", ["site"], domain="site", target=1)
    rows = oracle.training_data(_context(tmp_path, train))
    ids = _ids(rows)
    assert set(ids.tolist()) == set(_ids(target).tolist())  # every target row, no source row
    # repeated whole (each row equally often) up to the size of the training split
    assert len(set(torch.bincount(ids - 100).tolist())) == 1
    assert len(train["y"]) <= len(ids) < len(train["y"]) + 6
    assert torch.equal(rows["y"], target["y"][ids - 100])  # with their labels, both classes
    assert set(rows["y"].tolist()) == {0, 1} and (rows["z"][:, 0] == 1).all()
    only_one_class = _cat(source, {k: v[::2] for k, v in target.items()})
    with pytest.raises(ShortcutlabError, match="target-domain training rows of every class"):
        oracle.training_data(_context(tmp_path, only_one_class))


def test_oracle_on_a_domain_shift_trains_on_the_target_unlabelled_split_with_its_labels(tmp_path):
    train, unlabelled = _rows(20, 0, site=0), _rows(6, 100, site=0)  # site is no attribute here
    oracle = _build("oracle", ["ruler"], domain="site", target=1)
    rows = oracle.training_data(_context(tmp_path, train, unlabelled))
    ids = _ids(rows)
    assert set(ids.tolist()) == set(_ids(unlabelled).tolist())
    assert len(ids) >= 20 and torch.equal(rows["y"], unlabelled["y"][ids - 100])
    # unlike the generative methods (below), the oracle reads the target labels
    flipped = {**unlabelled, "y": 1 - unlabelled["y"]}
    assert torch.equal(oracle.training_data(_context(tmp_path, train, flipped))["y"], 1 - rows["y"])


GENERATORS = ["maskmedpaint", "text2img", "img2img"]


@pytest.fixture
def quick_generation(monkeypatch):
    """The UNet's widths are no hyperparameter; its smallest setting keeps a fit to a second.
    The source / generated figure (most of the time otherwise) is not drawn."""
    small = functools.partial(mmp.DiffusionParams, unet_channels=(8, 16, 16))
    monkeypatch.setattr(mmp, "DiffusionParams", small)
    monkeypatch.setattr(mmp_method.MaskMedPaint, "_save_grid", lambda *_a, **_k: None)


def _generated(tmp_path, cache: str, train, unlabelled, attributes):
    """The rows each generative method adds to ``train`` and the cache folders it made."""
    out = {}
    for name in GENERATORS:
        hp = {**TINY, "cache": str(tmp_path / cache), "domain_check": False}
        method = _build(name, attributes, domain="site", target=1, **hp)
        rows = method.training_data(_context(tmp_path / f"run-{cache}", train, unlabelled))
        out[name] = {k: v[len(train["y"]) :] for k, v in rows.items()}
        assert len(out[name]["y"]) > 0
    return out, sorted(p.name for p in (tmp_path / cache).iterdir())


def _assert_same_rows(a, b):
    for name in GENERATORS:
        for key in ("x", "y", "z", "mask"):
            assert torch.equal(a[name][key], b[name][key]), (name, key)


def test_generative_methods_never_read_the_target_unlabelled_labels(tmp_path, quick_generation):
    train, unlabelled = _rows(16, 0, site=0), _rows(8, 100, site=0)
    relabelled = {**unlabelled, "y": torch.roll(unlabelled["y"], 1)}  # every label changes
    assert not torch.equal(relabelled["y"], unlabelled["y"])
    rows, folders = _generated(tmp_path, "a", train, unlabelled, ["ruler"])
    rows_relabelled, folders_relabelled = _generated(tmp_path, "b", train, relabelled, ["ruler"])
    assert folders == folders_relabelled  # the same cache keys: model and all three sets
    assert len(folders) == 4
    _assert_same_rows(rows, rows_relabelled)  # generated afresh, the same images
    # the key does cover the labels the generator learns from, the source rows'
    info = TaskInfo(2, ["ruler"], [2], in_channels=1, image_size=16)
    hp = {**get_method("maskmedpaint").hparam_defaults(), **TINY, "domain": "site"}

    def key(train_rows):
        pool, domain = mmp_method.generation_pool(train_rows, unlabelled, info, hp)
        return mmp_method.cache_dirs(pool, hp, "maskmedpaint", 0, tmp_path, domain)

    assert key({**train, "y": torch.roll(train["y"], 1)}) != key(train)


def test_generative_methods_never_read_the_labels_of_target_rows_in_train(
    tmp_path, quick_generation
):
    source, target = _rows(16, 0, site=0), _rows(8, 100, site=1)
    train = _cat(source, target)
    relabelled = _cat(source, {**target, "y": torch.roll(target["y"], 1)})
    rows, _ = _generated(tmp_path, "a", train, None, ["site"])
    rows_relabelled, _ = _generated(tmp_path, "b", relabelled, None, ["site"])
    _assert_same_rows(rows, rows_relabelled)


def test_grounded_roi_replaces_missing_masks_and_is_kept_exactly(tmp_path):
    """``roi="grounding"``: without data masks, the ROI is the grounding of the ``y`` token by
    the fitted model itself, written with the set, and kept pixel-exact like a data mask."""
    images, _, meta = toy_source()
    diffusion, generation = tiny_params()
    args = (images, meta, None, ["site"], "site", 1, "maskmedpaint", diffusion, generation)
    with pytest.raises(ShortcutlabError, match="dataset.roi: grounding"):
        mmp.build_generated_set(*args, tmp_path / "set", tmp_path / "model", 2, seed=0)
    table = mmp.build_generated_set(
        *args, tmp_path / "set", tmp_path / "model", 2, seed=0, roi="grounding"
    )
    assert (table.meta["roi"] == "grounding").all() and table.masks is not None
    covered = table.masks.mean(axis=(1, 2))
    assert (covered > 0).all() and (covered < 1).all()  # Otsu splits every map
    rows = table.meta["source_row"].to_numpy().copy()
    gen = torch.from_numpy(table.images)
    for i, r in enumerate(rows):
        roi = torch.from_numpy(table.masks[i]).expand_as(images[r])
        assert torch.equal(gen[i][roi], images[r][roi])
        assert not torch.equal(gen[i][~roi], images[r][~roi])
    # the same masks as grounding the saved model directly
    model = mmp.ConditionalDiffusion.load(tmp_path / "model")
    again = mmp.grounding_roi(model, images[rows], torch.as_tensor(meta["y"].to_numpy()[rows]))
    assert np.array_equal(again.numpy(), table.masks)


def test_dataset_roi_grounding_runs_maskmedpaint_on_data_without_masks(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=120)
    meta = pd.read_csv(root / "metadata.csv").drop(columns="mask")
    meta.to_csv(root / "metadata.csv", index=False)
    tiny = {**TINY, "cache": str(tmp_path / "cache")}
    dataset = {"name": "csv", "root": str(root), "attributes": ["site"], "image_size": 16}
    common = dict(methods=["maskmedpaint"], hparams={"maskmedpaint": tiny})
    cfg = write_config(tmp_path / "cfg.yaml", root, **common, train={"epochs": 1})
    code, _, err = run_cli(["run", cfg, "--out", tmp_path / "no", "--quiet"], capsys)
    assert code == 2 and "set dataset.roi: grounding" in err
    cfg = write_config(
        tmp_path / "g.yaml",
        root,
        **common,
        train={"epochs": 1},
        dataset={**dataset, "roi": "grounding"},
    )
    code, _, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    (made,) = (tmp_path / "cache").glob("maskmedpaint-*/metadata.csv")
    table = mmp.load_generated(made.parent, ["site"])
    assert (table.meta["roi"] == "grounding").all() and table.masks.any()
    report = json.loads(
        (tmp_path / "out" / "maskmedpaint" / "seed_0" / "generated.json").read_text()
    )
    assert report["n_generated"] == len(table)
    assert (tmp_path / "out" / "figures" / "generated_maskmedpaint_seed0.png").is_file()
