"""Shared fixtures: small datasets written to disk the way a user would lay them out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

# Under pytest-xdist (`make test` runs two workers) each worker gets one core; alone, two threads.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small-matrix tests (faster than two contending ones
    on a shared box); the previous setting is restored afterwards. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from shortcutlab.experiment.runner import torch_threads

    with torch_threads(1):
        yield


def write_csv_dataset(
    root: Path,
    n: int = 240,
    with_split: bool = True,
    correlation: float = 0.9,
    size: int = 16,
    seed: int = 0,
    external: int = 0,
) -> Path:
    """A CSV + PNG folder: y = bright blob in the centre, z = 'site' marker in a corner.

    With ``with_split`` the split column is written: train/val at ``correlation``, inv at the
    opposite, bal uncorrelated; without it the split builder has to make them. ``external``
    more rows (split ``external``, drawn like train) are appended for post-hoc debiasing.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    rows = []
    plan = {"train": correlation, "val": correlation, "inv": 1 - correlation, "bal": 0.5}
    plan["external"] = correlation
    splits = np.array(
        ["train"] * (n // 2)
        + ["val"] * (n // 6)
        + ["inv"] * (n // 6)
        + ["bal"] * (n - n // 2 - 2 * (n // 6))
        + ["external"] * external
    )
    for i, split in enumerate(splits):
        y = int(rng.integers(0, 2))
        if with_split:
            z = y if rng.random() < plan[split] else 1 - y
        else:
            z = int(rng.integers(0, 2))
        img = rng.normal(60, 10, (size, size))
        c = size // 2
        if y:
            img[c - 3 : c + 3, c - 3 : c + 3] += 120
        if z:
            img[:3, :3] = 255
        mask = np.zeros((size, size), np.uint8)
        mask[c - 4 : c + 4, c - 4 : c + 4] = 255
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
        row = {"path": f"images/{i}.png", "y": y, "site": ["A", "B"][z], "mask": f"masks/{i}.png"}
        if with_split:
            row["split"] = split
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture
def csv_dataset(tmp_path: Path) -> Path:
    return write_csv_dataset(tmp_path / "data")


def write_config(path: Path, root: Path, **extra) -> Path:
    import yaml

    cfg = {
        "dataset": {"name": "csv", "root": str(root), "attributes": ["site"], "image_size": 16},
        "methods": ["erm"],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 32, "feature_dim": 16},
        "bootstrap": 20,
    }
    for key, value in extra.items():
        cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Generated datasets are cached in a temporary folder, never in the user's home."""
    import os

    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("SHORTCUTLAB_CACHE")
    os.environ["SHORTCUTLAB_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SHORTCUTLAB_CACHE", None)
    else:
        os.environ["SHORTCUTLAB_CACHE"] = old


def run_cli(args, capsys) -> tuple[int, str, str]:
    """``shortcutlab ARGS`` in-process, as a user would call it: (exit code, stdout, stderr)."""
    import sys

    from shortcutlab.cli import main

    old, sys.argv = sys.argv, ["shortcutlab", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def toy_images(n: int, size: int, seed: int = 0, channels: int = 3):
    """Class 0 dark, class 1 bright, horizontal stripes: learnable in a few hundred diffusion
    steps. Returns (uint8 images n x channels x size x size, labels)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.2 + 0.5 * y[:, None, None, None] + 0.1 * torch.rand(n, channels, 1, 1, generator=g)
    x = x.expand(n, channels, size, size).clone()
    x[:, :, ::4] += 0.2
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def write_tiny_sd(root: Path, channels: int = 3, scheduler: bool = False) -> Path:
    """A randomly initialised Stable-Diffusion-layout folder (``unet/``, ``vae/``, and with
    ``scheduler`` a PNDM ``scheduler/`` and ``model_index.json``), 16-pixel images."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=24,
        attention_head_dim=4,
        norm_num_groups=8,
    ).save_pretrained(root / "unet")
    AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=0.18215,
    ).save_pretrained(root / "vae")
    if scheduler:
        PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            steps_offset=1,
            set_alpha_to_one=False,
        ).save_pretrained(root / "scheduler")
        (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return root


def small_phantom(name: str, attributes: list[str], size: int = 120, seed: int = 3):
    """A small 32-pixel embedded phantom with its shortcut at P = 0.9, rendered without the
    cache."""
    from shortcutlab.data.sources import make_synthetic

    return make_synthetic(
        name,
        size=size,
        attributes=attributes,
        correlation=0.9,
        seed=seed,
        image_size=32,
        use_cache=False,
    )


@pytest.fixture(scope="session")
def small_derm():
    """A 120-image synth-derm table with the ruler shortcut (rendered once per session; the
    reliance and attribution tests read it)."""
    return small_phantom("synth-derm", ["ruler"])
