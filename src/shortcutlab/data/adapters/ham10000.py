"""HAM10000: ``HAM10000_metadata.csv`` (``lesion_id, image_id, dx, dx_type, age, sex,
localization``; newer copies add ``dataset``), images ``<image_id>.jpg`` anywhere under
``root`` (``HAM10000_images_part_1/``, ``_part_2/`` as published).

``dataset.label``: a ``dx`` value (``mel``: y = dx == mel) or ``dx`` (one class per diagnosis, in
sorted order). Attributes: ``sex`` (F/M; ``unknown`` dropped), ``age`` (binned), ``site``
(``localization``), ``dx_type``, and artefacts from ``dataset.artifacts`` (``isic_bias.csv``).
Several images show one lesion: ``lesion_id`` keeps them in one split.
ROI masks (for maskmedpaint): ``dataset.files.masks``, a folder of ``<image>_segmentation.png``
(ISIC 2018 Task 1's layout) or files named like the images; images without one are dropped.
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    find_file,
    finish,
    image_index,
    lesion_masks,
    pick,
    read_csv,
    require,
)
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError

SEX = {"female": "F", "male": "M"}


def class_label(values: pd.Series, label: str, column: str, cfg: AdapterConfig) -> pd.Series:
    """y from a diagnosis column: one-vs-rest for a value, one class per value for ``column``."""
    known = sorted(values.dropna().astype(str).unique())
    if str(label).lower() == column.lower():
        cfg.notes.append(
            f"labels: {column} as classes " + ", ".join(f"{i} = {k}" for i, k in enumerate(known))
        )
        return values.astype(str).map({k: i for i, k in enumerate(known)})
    chosen = pick(label, [*known, column], cfg.name, f"{column} value")
    return (values.astype(str) == chosen).astype(int)


def located(ids: pd.Series, index: dict[str, str], cfg: AdapterConfig, source: str) -> pd.Series:
    paths = ids.astype(str).map(index.get)
    if paths.isna().any():
        raise ShortcutlabError(
            f"{cfg.name}: {int(paths.isna().sum())} images of {source} are not under {cfg.root} "
            f"(e.g. {ids[paths.isna()].iloc[0]}.jpg)"
        )
    return paths


@register_dataset("ham10000")
def ham10000(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    path = find_file(
        cfg, "metadata", ["HAM10000_metadata.csv", "HAM10000_metadata"], "HAM10000_metadata.csv"
    )
    df = read_csv(path, cfg.name)
    require(df, ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"], path)
    out = pd.DataFrame(
        {
            "path": located(df["image_id"], image_index(cfg.root), cfg, path.name),
            "key": df["image_id"],
            "y": class_label(df["dx"], cfg.label, "dx", cfg),
            "sex": df["sex"].map(SEX),
            "age": pd.to_numeric(df["age"], errors="coerce"),
            "site": df["localization"],
            "dx_type": df["dx_type"],
            "lesion_id": df["lesion_id"],
        }
    )
    masks = lesion_masks(cfg, df["image_id"])
    if masks is not None:
        out["mask"] = masks.to_numpy()
    return finish(out, cfg, ["sex", "age", "site", "dx_type"])
