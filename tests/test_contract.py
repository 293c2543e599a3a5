"""The runner/method seam: the contexts against the ``RunContext`` protocol, and every registered
method built, updated and asked to predict through it (DomainBed's ``test_init_update_predict``)."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pandas as pd
import pytest
import torch
from _fake_context import FakeContext

from shortcutlab.data.table import ImageTable
from shortcutlab.experiment.config import ExperimentConfig
from shortcutlab.experiment.context import Context, tensors_of
from shortcutlab.experiment.runner import build_method, carve_holdout, task_info
from shortcutlab.methods import METHODS
from shortcutlab.methods.base import RunContext, TaskInfo
from shortcutlab.store.layout import RunLayout

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_GENERATIVE = {
    "autoencoder_steps": 1,
    "stage1_steps": 2,
    "stage2_steps": 1,
    "n_target": 4,
    "num_per_image": 1,
    "sample_steps": 2,
    "latent": False,
    "diffusion_batch_size": 16,
    "domain_check": False,
}
# the fewest steps each method's extra stages need; everything else is the registry's default
TINY = {
    "jtt": {"jtt_epochs": 1},
    "kd": {"teacher_backbone": "small-cnn", "teacher_epochs": 1},
    "groupdistil": {"teacher_backbone": "small-cnn", "teacher_epochs": 1},
    "swift": {"step1_epochs": 1, "step2_epochs": 1, "batch_size": 8},
    "dfr": {"dfr_subsamples": 2},
    "maskmedpaint": TINY_GENERATIVE,
    "img2img": TINY_GENERATIVE,
    "text2img": TINY_GENERATIVE,
    "counterfactual-aug": {
        "autoencoder_steps": 1,
        "diffusion_steps": 2,
        "latent": False,
        "unet_channels": [8, 16, 16],
        "sample_steps": 2,
        "search_samples": 4,
        "diffusion_batch_size": 16,
    },
}


def _protocol_members() -> tuple[set[str], set[str]]:
    """(data attributes, methods) that ``RunContext`` declares."""
    attrs = set(typing.get_type_hints(RunContext, include_extras=False))
    methods = {
        n
        for n, v in vars(RunContext).items()
        if callable(v) and not n.startswith("_") and n not in attrs
    }
    return attrs, methods


def _tiny_table(n: int = 96, size: int = 16, seed: int = 0) -> ImageTable:
    """y: a bright centre; site: a corner marker agreeing with y in 80% of rows; both classes
    and both sites in every split."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    site = np.where(rng.random(n) < 0.8, y, 1 - y)
    images = rng.integers(40, 80, (n, 1, size, size)).astype(np.uint8)
    images[y == 1, :, 6:10, 6:10] = 200
    images[site == 1, :, :3, :3] = 255
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["bal"] * (n - n // 2 - n // 4))
    meta = pd.DataFrame({"y": y, "site": site, "split": split})
    masks = np.zeros((n, size, size), bool)
    masks[:, 5:11, 5:11] = True
    return ImageTable(images, meta, ["site"], 2, masks=masks, name="tiny")


def _cfg() -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "csv", "root": "unused", "attributes": ["site"]},
            "train": {"epochs": 1, "batch_size": 16, "feature_dim": 16},
        }
    )


def _context(table: ImageTable, cls, info: TaskInfo, tmp_path) -> Context:
    train_table = table.split("train")
    holdout = None
    if cls.holdout_fraction > 0:
        keep, hold = carve_holdout(train_table, max(cls.holdout_fraction, 0.25), seed=0)
        holdout = tensors_of(train_table.select(hold))
        train_table = train_table.select(keep)
    return Context(
        train=tensors_of(train_table),
        val=tensors_of(table.split("val")),
        holdout=holdout,
        info=info,
        layout=RunLayout(tmp_path / "run", tmp_path / "figures", cls.name, 0),
        device=torch.device("cpu"),
        seed=0,
        batch_size=16,
    )


def test_the_runners_and_the_test_contexts_implement_the_protocol(tmp_path):
    attrs, methods = _protocol_members()
    assert {"train", "val", "holdout", "unlabelled", "layout", "samples_seen"} <= attrs
    assert {"batches", "fit", "predict", "features", "autocast"} <= methods
    table = _tiny_table()
    info = task_info(table, _cfg(), 1)
    real = _context(table, METHODS["erm"], info, tmp_path)
    fake = FakeContext(info, real.train, real.val)
    for ctx in (real, fake):
        assert isinstance(ctx, RunContext)  # every member is there
        for name in methods:  # ... with the protocol's parameters, in its order
            want = list(inspect.signature(getattr(RunContext, name)).parameters)[1:]
            assert list(inspect.signature(getattr(ctx, name)).parameters) == want, (ctx, name)


def test_a_context_missing_a_member_is_not_a_run_context():
    table = _tiny_table()
    info = task_info(table, _cfg(), 1)
    t = tensors_of(table.split("train"))
    partial = FakeContext(info, t, t)
    assert isinstance(partial, RunContext)
    del partial.layout  # a context that forgot where the run's files go
    assert not isinstance(partial, RunContext)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_updates_and_predicts(name, tmp_path):
    cls = METHODS[name]
    table = _tiny_table()
    cfg = _cfg()
    hp = {**cls.hparam_defaults(), **TINY.get(name, {})}
    if "cache" in hp:
        hp["cache"] = str(tmp_path / "cache")
    torch.manual_seed(0)
    info = task_info(table, cfg, 3)
    method = build_method(name, hp, info, cfg.train)
    ctx = _context(table, cls, info, tmp_path)
    ctx.layout.dir.mkdir(parents=True)
    before = {k: v.detach().clone() for k, v in method.model.named_parameters()}

    method.on_train_start(ctx)
    ctx.train = method.training_data(ctx)
    assert set(ctx.train) >= {"x", "y", "z", "g", "idx"}
    assert len({len(v) for k, v in ctx.train.items()}) == 1  # one length for every key
    assert int(ctx.train["g"].max()) < info.num_groups
    epochs = []
    losses = ctx.fit(method, 1, on_epoch=lambda e, m: epochs.append(m), seed=0)
    assert epochs and losses and all(np.isfinite(v) for v in losses.values()), losses
    method.on_train_end(ctx)

    changed = [k for k, v in method.model.named_parameters() if not torch.equal(v, before[k])]
    assert changed, f"{name}: no parameter moved"
    logits = ctx.predict(method, ctx.val)
    assert logits.shape == (len(ctx.val["y"]), info.num_classes)
    assert torch.isfinite(logits).all()
    blocks = ctx.features(method, ctx.val)
    assert "f" in blocks and all(len(b) == len(ctx.val["y"]) for b in blocks.values())
    # evaluation's one pass gives the same numbers as the two passes
    both, both_blocks = ctx.predict_features(method, ctx.val)
    assert torch.equal(both, logits) and set(both_blocks) == set(blocks)
    assert all(np.array_equal(both_blocks[k], blocks[k]) for k in blocks)
    assert ctx.samples_seen >= len(ctx.train["y"]) // 2
