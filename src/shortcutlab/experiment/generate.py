"""``shortcutlab generate GENERATOR CONFIG.yaml --out DIR``: a generated training set on disk.

The config is an experiment config: its ``dataset`` section names the data (the training split
is the source of images), ``hparams.<generator>`` sets the generator (see ``shortcutlab
methods``). ``DIR`` receives ``metadata.csv``, the PNGs and ``model/`` (the fitted diffusion
model); a second call with the same ``DIR`` reuses both.
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
    from shortcutlab.experiment.runner import _tensors, load_dataset, method_hparams, task_info
    from shortcutlab.methods.maskmedpaint import generate_for_training

    if generator not in GENERATORS:
        raise ShortcutlabError(
            f"unknown generator '{generator}'; choose one of: {', '.join(GENERATORS)}"
        )
    hp = method_hparams(MethodSpec(name=generator), cfg)
    table = load_dataset(cfg.dataset)
    rows = np.flatnonzero(table.meta["split"].astype(str).to_numpy() == "train")
    train_table = table.select(rows)
    if "path" in train_table.meta.columns:
        names = train_table.meta["path"].astype(str).tolist()
    else:
        names = [f"{table.name} row {r}" for r in rows]
    info = task_info(table, cfg, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return generate_for_training(
        _tensors(train_table),
        info,
        hp,
        generator,
        cfg.seeds[0] if seed is None else seed,
        out,
        progress,
        out_dir=out,
        model_dir=out / "model",
        source_names=names,
    )
