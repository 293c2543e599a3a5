"""ISIC 2019: ``ISIC_2019_Training_GroundTruth.csv`` (``image, MEL, NV, BCC, AK, BKL, DF, VASC,
SCC, UNK``, one-hot), ``ISIC_2019_Training_Metadata.csv`` (``image, age_approx,
anatom_site_general, lesion_id, sex``), joined on ``image``; images ``<image>.jpg`` anywhere under
``root`` (``ISIC_2019_Training_Input/`` as published).

``dataset.label``: a class column (``MEL``: y = 1 where it is 1) or ``dx`` (one class per column,
in the file's order). Attributes: ``sex`` (F/M), ``age`` (age_approx, binned), ``site``
(anatom_site_general), and artefacts from ``dataset.artifacts`` (``isic_bias.csv``,
FastDiME-Med's ruler file). ``lesion_id`` keeps a lesion's images in one split.
ROI masks (for maskmedpaint): ``dataset.files.masks``, a folder of ``<image>_segmentation.png``
(ISIC 2018 Task 1's layout) or files named like the images; images without one are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    find_file,
    finish,
    image_index,
    lesion_masks,
    optional_file,
    pick,
    read_csv,
    require,
)
from shortcutlab.data.adapters.ham10000 import SEX, located
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset


@register_dataset("isic2019")
def isic2019(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    name = "ISIC_2019_Training_GroundTruth.csv"
    path = find_file(cfg, "ground_truth", [name], name)
    gt = read_csv(path, cfg.name)
    require(gt, ["image"], path)
    classes = [c for c in gt.columns if c != "image"]
    one_hot = gt[classes].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy()
    if str(cfg.label).lower() == "dx":
        y = pd.Series(one_hot.argmax(axis=1), index=gt.index)
        cfg.notes.append(
            "labels: dx as classes " + ", ".join(f"{i} = {c}" for i, c in enumerate(classes))
        )
    else:
        chosen = pick(cfg.label, [*classes, "dx"], cfg.name, "class")
        y = pd.Series((one_hot[:, classes.index(chosen)] > 0.5).astype(int), index=gt.index)
    out = pd.DataFrame(
        {
            "path": located(gt["image"], image_index(cfg.root), cfg, path.name),
            "key": gt["image"],
            "y": y,
            "sex": np.nan,
            "age": np.nan,
            "site": np.nan,
            "lesion_id": np.nan,
        }
    )
    mpath = optional_file(cfg, "metadata", ["ISIC_2019_Training_Metadata.csv"])
    if mpath is not None:
        meta = read_csv(mpath, cfg.name)
        require(meta, ["image", "age_approx", "anatom_site_general", "lesion_id", "sex"], mpath)
        m = gt[["image"]].merge(meta, on="image", how="left")
        out = out.assign(
            sex=m["sex"].map(SEX).to_numpy(),
            age=pd.to_numeric(m["age_approx"], errors="coerce").to_numpy(),
            site=m["anatom_site_general"].to_numpy(),
            lesion_id=m["lesion_id"].to_numpy(),
        )
    masks = lesion_masks(cfg, gt["image"])
    if masks is not None:
        out["mask"] = masks.to_numpy()
    return finish(out, cfg, ["sex", "age", "site"])
