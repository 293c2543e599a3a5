"""NIH ChestX-ray14: ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``), images in
``images/`` or spread over ``images_NNN/images/``, official lists ``train_val_list.txt`` and
``test_list.txt`` (optional: test -> split ``test``, train_val -> ``train``).

The header's two bracketed names contain commas, so a CSV reader sees 11 columns: only the first
seven names are used (``Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age,
Patient Gender, View Position``). ``dataset.label`` is a finding name from the pipe-separated
``Finding Labels`` (y = 1 when the image lists it; ``No Finding`` too). Attributes: ``sex`` (F/M),
``age`` (binned), ``view`` (AP/PA); patient id = ``Patient ID``.
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    find_file,
    finish,
    image_index,
    optional_file,
    pick,
    read_csv,
)
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError

COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
]


def _list(cfg: AdapterConfig, role: str, name: str) -> set[str] | None:
    path = optional_file(cfg, role, [name])
    return None if path is None else set(path.read_text().split())


@register_dataset("nih-cxr14")
def nih_cxr14(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    names = ["Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"]
    path = find_file(cfg, "metadata", names, "Data_Entry_2017_v2020.csv")
    raw = read_csv(path, cfg.name)
    if list(raw.columns[:2]) != COLUMNS[:2] or raw.shape[1] < 7:
        raise ShortcutlabError(
            f"{path} does not start with the columns {', '.join(COLUMNS)} (the published header)"
        )
    df = raw.iloc[:, :7].set_axis(COLUMNS, axis=1)
    findings = df["Finding Labels"].fillna("").astype(str).str.split("|")
    known = sorted({f.strip() for fs in findings for f in fs if f.strip()})
    label = pick(cfg.label, known, cfg.name)
    index = image_index(cfg.root, _image_folders(cfg))
    paths = df["Image Index"].astype(str).map(lambda s: index.get(s.rsplit(".", 1)[0]))
    if paths.isna().any():
        first = df["Image Index"][paths.isna()].iloc[0]
        raise ShortcutlabError(
            f"{cfg.name}: {int(paths.isna().sum())} images of {path.name} are not under "
            f"{cfg.root}/images or images_NNN/images (e.g. {first})"
        )
    out = pd.DataFrame(
        {
            "path": paths,
            "key": df["Image Index"],
            "y": findings.map(lambda fs: int(label in [f.strip() for f in fs])),
            "sex": df["Patient Gender"].where(df["Patient Gender"].isin(["F", "M"])),
            "age": pd.to_numeric(
                df["Patient Age"].astype(str).str.extract(r"(\d+)", expand=False), errors="coerce"
            ),
            "view": df["View Position"].where(df["View Position"].isin(["AP", "PA"])),
            "patient_id": df["Patient ID"].astype(str),
        }
    )
    test = _list(cfg, "test_list", "test_list.txt")
    if test is not None:
        out["split"] = df["Image Index"].map(lambda s: "test" if s in test else "train")
    return finish(out, cfg, ["sex", "age", "view"])


def _image_folders(cfg: AdapterConfig) -> list[str]:
    folders = ["images"] + sorted(p.name for p in cfg.root.glob("images_*") if p.is_dir())
    return [f for f in folders if (cfg.root / f).is_dir()] or ["."]
