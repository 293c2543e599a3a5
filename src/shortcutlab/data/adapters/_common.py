"""Helpers the adapters share: finding files, reading CSVs, labels, bins, artefact files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from shortcutlab.data.adapters.registry import AdapterConfig
from shortcutlab.errors import ShortcutlabError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: columns of an artefact file that are not artefacts
_NOT_ARTEFACTS = {"split", "label", "label_string", "labels"}


def find_file(cfg: AdapterConfig, role: str, candidates: list[str], what: str) -> Path:
    """``dataset.files[role]`` (relative to root or absolute), else the first of
    ``candidates`` under ``root``; one sentence when none exists."""
    if role in cfg.files:
        path = Path(cfg.files[role])
        path = path if path.is_absolute() else cfg.root / path
        if not path.is_file():
            raise ShortcutlabError(f"{cfg.name}: dataset.files.{role} {path} does not exist")
        return path
    for name in candidates:
        if (cfg.root / name).is_file():
            return cfg.root / name
    raise ShortcutlabError(
        f"{cfg.name}: no {what} under {cfg.root} (looked for {', '.join(candidates)}; or set "
        f"dataset.files.{role})"
    )


def optional_file(cfg: AdapterConfig, role: str, candidates: list[str]) -> Path | None:
    """Like ``find_file``, but None when the data has no such file."""
    if role in cfg.files:
        return find_file(cfg, role, candidates, role)
    return next((cfg.root / c for c in candidates if (cfg.root / c).is_file()), None)


def check_root(cfg: AdapterConfig) -> None:
    if not cfg.root.exists():
        raise ShortcutlabError(f"{cfg.name}: dataset root {cfg.root} does not exist")


def read_csv(path: Path, name: str, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except Exception as exc:  # pandas raises many types for malformed files
        raise ShortcutlabError(f"{name}: cannot parse {path} as CSV: {exc}") from None


def require(df: pd.DataFrame, columns: list[str], path: Path | str) -> None:
    for col in columns:
        if col not in df.columns:
            raise ShortcutlabError(
                f"{path} has no column '{col}'; its columns are: {', '.join(map(str, df.columns))}"
            )


def pick(label: str, known: list[str], name: str, what: str = "finding") -> str:
    """``label`` when it is one of ``known`` (case-insensitively), else one sentence."""
    for k in known:
        if k.lower() == str(label).lower():
            return k
    raise ShortcutlabError(
        f"{name}: unknown {what} '{label}' (dataset.label); known: {', '.join(known)}"
    )


def chexpert_labels(values: pd.Series, policy: str, label: str, notes: list[str]) -> pd.Series:
    """CheXpert-style 1 / 0 / -1 (uncertain) / blank (not mentioned) as 1/0/NaN: blank is 0,
    -1 follows ``policy`` (drop: NaN, the row is dropped; zero; one)."""
    v = pd.to_numeric(values, errors="coerce")
    blank, uncertain = int(v.isna().sum()), int((v == -1).sum())
    v = v.fillna(0.0)
    v = v.mask(v == -1, {"drop": np.nan, "zero": 0.0, "one": 1.0}[policy])
    notes.append(
        f"labels: '{label}' 1 = positive, 0 or blank (not mentioned, {blank} rows) = negative, "
        f"-1 (uncertain, {uncertain} rows): {policy} (dataset.uncertain)"
    )
    return v


def apply_bins(values: pd.Series, bins: dict[str, list[float]], attr: str, name: str) -> pd.Series:
    """A categorical of the bin each value falls in (``lo <= v <= hi``; order as given), NaN
    outside every bin; one sentence for a bin without any row."""
    v = pd.to_numeric(values, errors="coerce")
    out = pd.Series(pd.NA, index=values.index, dtype=object)
    for b, (lo, hi) in bins.items():
        inside = (v >= lo) & (v <= hi)
        out[inside.fillna(False).to_numpy(dtype=bool)] = b
    for b, (lo, hi) in bins.items():
        if not (out == b).any():
            seen = f"{v.min():g} to {v.max():g}" if v.notna().any() else "none"
            raise ShortcutlabError(
                f"{name}: dataset.{attr}_bins '{b}' [{lo:g}, {hi:g}] has no images (values "
                f"in the data: {seen}); change or remove that bin"
            )
    return pd.Series(pd.Categorical(out, categories=list(bins)), index=values.index)


def image_index(root: Path, folders: list[str] | None = None) -> dict[str, str]:
    """Image file stem -> path relative to ``root``, for every image under ``root`` (or under
    the ``folders`` of it that exist); the first one found wins."""
    index: dict[str, str] = {}
    tops = [root / f for f in folders] if folders else [root]
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                stem, ext = os.path.splitext(f)
                if ext.lower() in IMAGE_EXTENSIONS:
                    index.setdefault(stem, os.path.relpath(os.path.join(dirpath, f), root))
    return index


def norm_key(key: object) -> str:
    """An image key comparable across files: CheXpert's ``CheXpert-v1.0-small/`` prefix
    removed; a bare file name without its extension or ISIC's ``_downsampled``."""
    k = str(key).strip()
    k = re.sub(r"^CheXpert-v1\.0(-small)?/", "", k)
    if "/" not in k:
        k = os.path.splitext(k)[0] if os.path.splitext(k)[1].lower() in IMAGE_EXTENSIONS else k
        k = k.removesuffix("_downsampled")
    return k


def read_artefacts(path: Path, name: str) -> pd.DataFrame:
    """An artefact label file as a frame indexed by ``norm_key`` of its first column, one
    ``no``/``yes`` column per artefact (lower-case names, spaces as ``_``).

    Accepted: Bissoto et al.'s ``isic_bias.csv`` (``;``-separated ``image; dark_corner; hair;
    gel_border; gel_bubble; ruler; ink; patches; label; label_string``), FastDiME-Med's ISIC
    ruler file (``img_name, Ruler, Sticker, Ink, split``) and any CSV whose first column is the
    image (its path or id) and whose other columns are 0/1 artefacts (e.g. ``Path, pacemaker``
    for CheXpert, ``Image Index, drain`` for NIH); ``split``, ``label`` and ``label_string``
    columns are ignored.
    """
    if not path.is_file():
        raise ShortcutlabError(f"{name}: artefact file {path} (dataset.artifacts) does not exist")
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.readline()
    sep = ";" if head.count(";") > head.count(",") else ","
    df = read_csv(path, name, sep=sep, skipinitialspace=True)
    df.columns = [re.sub(r"\s+", "_", str(c).strip().lower()) for c in df.columns]
    if len(df.columns) < 2:
        raise ShortcutlabError(f"{path} has no artefact columns after its image column")
    out = pd.DataFrame(index=df.iloc[:, 0].map(norm_key).to_numpy())
    for col in df.columns[1:]:
        if col in _NOT_ARTEFACTS:
            continue
        v = pd.to_numeric(df[col], errors="coerce")
        if not v.dropna().isin([0, 1]).all():
            raise ShortcutlabError(f"{path}: artefact column '{col}' must hold 0 or 1")
        out[col] = v.map({0: "no", 1: "yes"}).to_numpy()
    return out[~out.index.duplicated()]


def lesion_masks(cfg: AdapterConfig, ids: pd.Series) -> pd.Series | None:
    """Each image's ROI mask from the folder ``dataset.files.masks`` (ISIC's
    ``<image>_segmentation.png``, or a file named like the image), as an absolute path; rows
    without one are dropped by ``finish`` (ROI methods need every image's mask)."""
    if "masks" not in cfg.files:
        return None
    folder = Path(cfg.files["masks"])
    folder = folder if folder.is_absolute() else cfg.root / folder
    if not folder.is_dir():
        raise ShortcutlabError(f"{cfg.name}: dataset.files.masks {folder} is not a folder")
    index = image_index(folder)
    keys = ids.map(norm_key)
    found = keys.map(lambda k: index.get(f"{k}_segmentation") or index.get(k))
    return found.map(lambda rel: str(folder / rel) if isinstance(rel, str) else None)


def finish(
    df: pd.DataFrame, cfg: AdapterConfig, known: list[str], key: str = "key"
) -> pd.DataFrame:
    """The adapter's frame for ``table_from_frame``: artefact files joined on ``key``, every
    requested attribute checked (one sentence for an unknown one), ages (and skin tones) binned,
    rows without a label or a requested attribute dropped with a note, columns trimmed."""
    artefacts: list[str] = []
    for f in cfg.artifacts:
        path = Path(f) if Path(f).is_absolute() else cfg.root / f
        table = read_artefacts(path, cfg.name)
        new = [c for c in table.columns if c not in df.columns]
        artefacts += new
        df = df.assign(_k=df[key].map(norm_key)).join(table[new], on="_k").drop(columns="_k")
    for a in cfg.attributes:
        if a not in known and a not in artefacts:
            more = f", {', '.join(artefacts)}" if artefacts else ""
            hint = "" if artefacts else " (artefacts: add their label file to dataset.artifacts)"
            raise ShortcutlabError(
                f"{cfg.name} has no attribute '{a}'; it has: {', '.join(known)}{more}{hint}"
            )
    if "age" in cfg.attributes:
        if not cfg.age_bins:
            raise ShortcutlabError(
                f"{cfg.name}: age is an attribute, so dataset.age_bins is required (e.g. "
                "{young: [0, 50], old: [60, 200]})"
            )
        df = df.assign(age=apply_bins(df["age"], cfg.age_bins, "age", cfg.name))
    if "skin_tone" in cfg.attributes and cfg.skin_tone_bins:
        df = df.assign(
            skin_tone=apply_bins(df["skin_tone"], cfg.skin_tone_bins, "skin_tone", cfg.name)
        )
    checked = ["y", *cfg.attributes] + (["mask"] if "mask" in df.columns else [])
    for col in checked:
        missing = df[col].isna().to_numpy()
        if missing.any():
            why = {"y": "no usable label", "age": "an age outside every bin"}.get(col, f"no {col}")
            cfg.notes.append(f"{cfg.name}: dropped {int(missing.sum())} rows with {why}")
            df = df[~missing]
    if len(df) == 0:
        raise ShortcutlabError(f"{cfg.name}: no rows are left under {cfg.root}")
    keep = ["path", "y", *cfg.attributes] + [
        c for c in ("split", "patient_id", "lesion_id", "mask") if c in df.columns
    ]
    return df[keep].astype({"y": int}).reset_index(drop=True)
