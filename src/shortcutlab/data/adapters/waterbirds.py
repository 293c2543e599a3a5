"""Waterbirds: ``metadata.csv`` (``img_id, img_filename, y, split, place, place_filename``),
images at ``img_filename`` under ``root``; split 0/1/2 = train/val/test (used as is by default:
``dataset.published_split``). ``y``: 1 = waterbird; attribute ``place``: land (0) / water (1).
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.data.adapters._common import check_root, find_file, finish, read_csv, require
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError


@register_dataset("waterbirds", published_split=True)
def waterbirds(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    path = find_file(cfg, "metadata", ["metadata.csv"], "metadata.csv")
    df = read_csv(path, cfg.name)
    require(df, ["img_filename", "y", "split", "place"], path)
    if str(cfg.label) not in ("y", "waterbird"):
        raise ShortcutlabError(
            f"{cfg.name}: unknown label '{cfg.label}' (dataset.label); known: y (waterbird)"
        )
    out = pd.DataFrame(
        {
            "path": df["img_filename"].astype(str),
            "key": df["img_filename"].astype(str),
            "y": pd.to_numeric(df["y"], errors="coerce"),
            "place": pd.Categorical(df["place"].map({0: "land", 1: "water"}), ["land", "water"]),
            "split": df["split"].map({0: "train", 1: "val", 2: "test"}),
        }
    )
    return finish(out, cfg, ["place"])
