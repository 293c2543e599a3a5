"""MIMIC-CXR-JPG: ``mimic-cxr-2.0.0-metadata.csv``, ``-chexpert.csv``, ``-split.csv`` (each may
be gzipped) and MIMIC-IV's ``patients.csv`` (under ``root`` or ``root/hosp``; or
``dataset.files.patients``) for sex and age.

Rows are the metadata's images joined with the CheXpert labels on (subject_id, study_id), the
split on dicom_id (train/validate/test -> train/val/test) and the demographics on subject_id.
Image ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg``, XX the subject id's first two digits.
Attributes: ``sex`` (gender F/M), ``age`` (anchor_age, binned), ``view`` (AP/PA/LAT from
ViewPosition); patient id = subject_id. Labels as CheXpert's (``dataset.uncertain``).
"""

from __future__ import annotations

import pandas as pd

from shortcutlab.data.adapters._common import (
    check_root,
    chexpert_labels,
    find_file,
    finish,
    optional_file,
    pick,
    read_csv,
    require,
)
from shortcutlab.data.adapters.chexpert import FINDINGS
from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset

_STEM = "mimic-cxr-2.0.0-"
_VIEWS = {"AP": "AP", "PA": "PA", "LATERAL": "LAT", "LL": "LAT"}


def _file(cfg: AdapterConfig, role: str, stem: str) -> pd.DataFrame:
    name = f"{_STEM}{stem}.csv"
    path = find_file(cfg, role, [name, f"{name}.gz"], name)
    return read_csv(path, cfg.name)


@register_dataset("mimic-cxr")
def mimic_cxr(cfg: AdapterConfig) -> pd.DataFrame:
    check_root(cfg)
    meta = _file(cfg, "metadata", "metadata")
    require(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], f"{_STEM}metadata.csv")
    labels = _file(cfg, "chexpert", "chexpert")
    require(labels, ["subject_id", "study_id"], f"{_STEM}chexpert.csv")
    label = pick(cfg.label, [f for f in FINDINGS if f in labels.columns], cfg.name)
    df = meta.merge(labels[["subject_id", "study_id", label]], on=["subject_id", "study_id"])
    split_path = optional_file(cfg, "split", [f"{_STEM}split.csv", f"{_STEM}split.csv.gz"])
    if split_path is not None:
        split = read_csv(split_path, cfg.name)
        require(split, ["dicom_id", "split"], split_path)
        df = df.merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
        df["split"] = df["split"].replace({"validate": "val"}).fillna("train")
    if {"sex", "age"} & set(cfg.attributes):
        candidates = [
            "patients.csv",
            "patients.csv.gz",
            "hosp/patients.csv",
            "hosp/patients.csv.gz",
        ]
        path = find_file(cfg, "patients", candidates, "MIMIC-IV patients.csv")
        patients = read_csv(path, cfg.name)
        require(patients, ["subject_id", "gender", "anchor_age"], path)
        df = df.merge(patients[["subject_id", "gender", "anchor_age"]], on="subject_id", how="left")
    if cfg.frontal_only:
        frontal = df["ViewPosition"].isin(["AP", "PA"]).to_numpy()
        cfg.notes.append(f"mimic-cxr: frontal_only kept {int(frontal.sum())} of {len(df)} images")
        df = df[frontal]
    subject = df["subject_id"].astype(int).astype(str)
    out = pd.DataFrame(
        {
            "path": "files/p"
            + subject.str[:2]
            + "/p"
            + subject
            + "/s"
            + df["study_id"].astype(int).astype(str)
            + "/"
            + df["dicom_id"].astype(str)
            + ".jpg",
            "key": df["dicom_id"].astype(str),
            "y": chexpert_labels(df[label], cfg.uncertain, label, cfg.notes),
            "view": df["ViewPosition"].map(_VIEWS),
            "patient_id": subject,
        }
    )
    if "gender" in df.columns:
        out["sex"] = df["gender"].where(df["gender"].isin(["F", "M"]))
        out["age"] = pd.to_numeric(df["anchor_age"], errors="coerce")
    if "split" in df.columns:
        out["split"] = df["split"]
    return finish(out, cfg, ["sex", "age", "view"])
