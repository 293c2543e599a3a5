"""CheXpert (v1.0 and v1.0-small): ``train.csv`` and ``valid.csv``.

``root`` is the folder holding ``CheXpert-v1.0-small/`` (or ``CheXpert-v1.0/``) or that folder
itself; the CSV's paths start with ``CheXpert-v1.0-small/``. ``valid.csv`` (radiologist-labelled,
the only public evaluation set) is split ``test``; ``train.csv`` is split ``train``. Labels 1 / 0
/ -1 (uncertain, ``dataset.uncertain``) / blank (not mentioned: 0). Attributes: ``sex`` (F/M;
``Unknown`` dropped), ``age`` (binned), ``view`` (AP/PA/LAT); patient id = the ``patientN`` path
part.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    chexpert_labels,
    finish,
    pick,
    read_csv,
    require,
)
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError

FINDINGS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
_PREFIX = re.compile(r"^CheXpert-v1\.0(-small)?/")


@register_dataset("chexpert")
def chexpert(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    sub = next((f for f in _FOLDERS if (cfg.root / f / "train.csv").is_file()), None)
    base = cfg.root / sub if sub else cfg.root
    if not (base / "train.csv").is_file():
        raise ShortcutlabError(f"chexpert: no train.csv in {cfg.root} or {cfg.root / _FOLDERS[0]}")
    frames = []
    for file, split in (("train.csv", "train"), ("valid.csv", "test")):
        if (base / file).is_file():
            df = read_csv(base / file, "chexpert")
            require(df, ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"], base / file)
            frames.append(df.assign(split=split))
    df = pd.concat(frames, ignore_index=True)
    label = pick(cfg.label, [f for f in FINDINGS if f in df.columns], "chexpert")
    rel = df["Path"].astype(str).str.replace(_PREFIX, "", regex=True)
    if cfg.frontal_only:
        frontal = (df["Frontal/Lateral"] == "Frontal").to_numpy()
        cfg.notes.append(f"chexpert: frontal_only kept {int(frontal.sum())} of {len(df)} images")
        df, rel = df[frontal], rel[frontal]
    lateral = df["Frontal/Lateral"] == "Lateral"
    view = df["AP/PA"].where(df["AP/PA"].isin(["AP", "PA"]))
    out = pd.DataFrame(
        {
            "path": (f"{sub}/" if sub else "") + rel,
            "key": rel,
            "y": chexpert_labels(df[label], cfg.uncertain, label, cfg.notes),
            "sex": df["Sex"].map({"Female": "F", "Male": "M"}),
            "age": pd.to_numeric(df["Age"], errors="coerce"),
            "view": np.where(lateral, "LAT", view.astype(object)),
            "split": df["split"],
            "patient_id": rel.str.extract(r"(patient\d+)", expand=False),
        }
    )
    out["view"] = out["view"].where(out["view"].isin(["AP", "PA", "LAT"]))
    return finish(out, cfg, ["sex", "age", "view"])
