"""``shortcutlab generate GENERATOR CONFIG.yaml --out DIR``: a generated training set on disk.

The config is an experiment config: its ``dataset`` section names the data (the training split
is the source of images), ``hparams.<generator>`` sets the generator (see ``shortcutlab
methods``). ``DIR`` receives ``metadata.csv``, the PNGs, ``model/`` (the fitted diffusion
model) and ``grid.png`` (source, ROI mask, generated copies); a second call with the same ``DIR``
reuses the model and the set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import ExperimentConfig, MethodSpec

GENERATORS = ("maskmedpaint", "text2img", "img2img")


def generate_dataset(
    cfg: ExperimentConfig,
    generator: str,
    out: str | Path,
    progress: Callable[[str, int, int], None] | None = None,
    seed: int | None = None,
) -> ImageTable:
    from shortcutlab.experiment.context import tensors_of
    from shortcutlab.experiment.hparams import method_hparams
    from shortcutlab.experiment.runner import UNLABELLED_SPLIT, load_dataset, task_info
    from shortcutlab.methods.maskmedpaint import (
        generate_for_training,
        generation_pool,
        save_generated_grid,
    )

    if generator not in GENERATORS:
        raise ShortcutlabError(
            f"unknown generator '{generator}'; choose one of: {', '.join(GENERATORS)}"
        )
    hp = method_hparams(MethodSpec(name=generator), cfg)
    table = load_dataset(cfg.dataset)
    split = table.meta["split"].astype(str).to_numpy()
    rows = np.flatnonzero(split == "train")
    target_rows = np.flatnonzero(split == UNLABELLED_SPLIT)
    if "path" in table.meta.columns:
        names = table.meta["path"].astype(str).to_numpy()
    else:
        names = np.array([f"{table.name} row {r}" for r in range(len(table))])
    info = task_info(table, cfg, 1)
    unlabelled = tensors_of(table.select(target_rows)) if len(target_rows) else None
    pool, domain = generation_pool(tensors_of(table.select(rows)), unlabelled, info, hp)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generated = generate_for_training(
        pool,
        info,
        hp,
        generator,
        cfg.seeds[0] if seed is None else seed,
        out,
        progress,
        out_dir=out,
        model_dir=out / "model",
        source_names=names[np.concatenate([rows, target_rows])].tolist(),
        domain_values=domain,
    )
    save_generated_grid(
        pool["x"].numpy(),
        pool["mask"].numpy() if "mask" in pool else None,
        pool["y"].numpy(),
        generated,
        out / "grid.png",
        f"{generator}: source, ROI, generated (target domain)",
    )
    return generated
