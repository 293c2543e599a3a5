"""Fitzpatrick17k: ``fitzpatrick17k.csv`` (``md5hash, fitzpatrick_scale, fitzpatrick_centaur,
label, nine_partition_label, three_partition_label, qc, url, url_alphanum``), images
``<md5hash>.jpg`` anywhere under ``root``; rows whose image was never downloaded are dropped
(with a note).

``dataset.label``: a value of ``three_partition_label`` (``malignant``: y = 1 for it),
``nine_partition_label`` or ``label`` (searched in that order). Attribute ``skin_tone``: the
Fitzpatrick type I-VI (``fitzpatrick_scale``; -1 = unknown, dropped), or the bins of
``dataset.skin_tone_bins`` over 1-6 (e.g. ``{light: [1, 3], dark: [4, 6]}``).
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    find_file,
    finish,
    image_index,
    read_csv,
    require,
)
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError

TYPES = ["I", "II", "III", "IV", "V", "VI"]
_LABEL_COLUMNS = ("three_partition_label", "nine_partition_label", "label")


@register_dataset("fitzpatrick17k")
def fitzpatrick17k(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    path = find_file(cfg, "metadata", ["fitzpatrick17k.csv"], "fitzpatrick17k.csv")
    df = read_csv(path, cfg.name)
    require(df, ["md5hash", "fitzpatrick_scale", *_LABEL_COLUMNS], path)
    want = str(cfg.label).lower()
    column = next((c for c in _LABEL_COLUMNS if want in set(df[c].astype(str).str.lower())), None)
    if column is None:
        known = sorted(df["three_partition_label"].dropna().astype(str).unique())
        raise ShortcutlabError(
            f"{cfg.name}: unknown label '{cfg.label}' (dataset.label); known: {', '.join(known)} "
            "(or a value of nine_partition_label or label)"
        )
    index = image_index(cfg.root)
    paths = df["md5hash"].astype(str).map(index.get)
    if paths.isna().all():
        raise ShortcutlabError(f"{cfg.name}: none of the <md5hash>.jpg images is under {cfg.root}")
    if paths.isna().any():
        cfg.notes.append(
            f"{cfg.name}: dropped {int(paths.isna().sum())} rows whose image is missing"
        )
    scale = pd.to_numeric(df["fitzpatrick_scale"], errors="coerce")
    scale = scale.where(scale.between(1, 6))
    tone = (
        scale
        if cfg.skin_tone_bins
        else pd.Categorical(
            scale.map(lambda v: TYPES[int(v) - 1] if v == v else None), categories=TYPES
        )
    )
    out = pd.DataFrame(
        {
            "path": paths,
            "key": df["md5hash"],
            "y": (df[column].astype(str).str.lower() == want).astype(int),
            "skin_tone": tone,
        }
    )
    out = out[out["path"].notna()]
    if not cfg.skin_tone_bins and "skin_tone" in cfg.attributes:
        present = [t for t in TYPES if (out["skin_tone"] == t).any()]
        out["skin_tone"] = out["skin_tone"].cat.set_categories(present)
    return finish(out, cfg, ["skin_tone"])
