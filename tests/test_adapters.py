"""Dataset adapters: tiny fixtures written in each published layout, quirks included, loaded
through ``load_config`` and the runner's ``load_dataset``; patient-level splits; induced
shortcuts; ``DIR/dataset.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli, write_csv_dataset
from PIL import Image

from shortcutlab.data.adapters import ADAPTERS, AdapterConfig
from shortcutlab.data.induce import marker_box
from shortcutlab.data.table import resolved_frame
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.runner import load_dataset

S = 8  # image side of every fixture


def _img(path: Path, value: int = 100, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((S, S, 3) if rgb else (S, S), value, np.uint8)
    arr[2:5, 2:5] = 30
    Image.fromarray(arr).save(path)


def _load(tmp_path: Path, **dataset):
    dataset.setdefault("image_size", S)
    dataset.setdefault("min_group_size", 1)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset}, sort_keys=False))  # bins keep their order
    return load_dataset(load_config(path).dataset)


def _no_shared_patients(table, column="patient_id"):
    owners = table.meta.groupby(column)["split"].nunique()
    assert (owners == 1).all(), owners[owners > 1]


# --------------------------------------------------------------------------------------------
# CheXpert: CheXpert-v1.0-small/ prefix, 1/0/-1/blank labels, Lateral rows, Unknown sex
def write_chexpert(root: Path, patients: int = 48) -> Path:
    base = root / "CheXpert-v1.0-small"
    rng = np.random.default_rng(0)
    header = [
        "Path",
        "Sex",
        "Age",
        "Frontal/Lateral",
        "AP/PA",
        "No Finding",
        "Cardiomegaly",
        "Pleural Effusion",
        "Support Devices",
    ]
    rows = {"train": [], "valid": []}
    for p in range(patients):
        split = "valid" if p >= patients - 4 else "train"
        sex = "Unknown" if p == 0 else ["Female", "Male"][p % 2]
        age = [25, 35, 70, 80][p % 4]
        for study in (1, 2):
            rel = f"{split}/patient{p:05d}/study{study}/view1_frontal.jpg"
            _img(base / rel, int(rng.integers(60, 200)))
            effusion = [1.0, 0.0, -1.0, ""][(p + study) % 4] if p % 3 else float(p % 2)
            rows[split].append(
                [
                    f"CheXpert-v1.0-small/{rel}",
                    sex,
                    age,
                    "Frontal",
                    ["AP", "PA"][study % 2],
                    "",
                    0.0,
                    effusion,
                    1.0,
                ]
            )
        if p % 6 == 0:
            rel = f"{split}/patient{p:05d}/study1/view2_lateral.jpg"
            _img(base / rel)
            rows[split].append(
                [f"CheXpert-v1.0-small/{rel}", sex, age, "Lateral", "", "", "", 1.0, ""]
            )
    for split, r in rows.items():
        pd.DataFrame(r, columns=header).to_csv(base / f"{split}.csv", index=False)
    return root


def test_chexpert_labels_policy_frontal_sex_and_patients(tmp_path):
    root = write_chexpert(tmp_path / "data")
    table = _load(
        tmp_path,
        name="chexpert",
        root=str(root),
        label="Pleural Effusion",
        uncertain="drop",
        frontal_only=True,
        attributes=["sex"],
        correlation=0.6,
    )
    raw = pd.concat(
        [pd.read_csv(root / "CheXpert-v1.0-small" / f"{s}.csv") for s in ("train", "valid")]
    )
    truth = dict(zip(raw["Path"], raw["Pleural Effusion"]))
    rows = resolved_frame(table)
    assert rows["path"].str.startswith("CheXpert-v1.0-small/").all()
    expected = rows["path"].map(truth).fillna(0.0)  # blank = not mentioned = 0
    assert (expected != -1).all()  # uncertain rows dropped
    assert (rows["y"] == expected.astype(int)).all()
    assert not rows["path"].str.contains("lateral").any()
    assert set(rows["sex"]) == {"F", "M"} and "patient00000" not in set(rows["patient_id"])
    assert table.attribute_values["sex"] == ["F", "M"]
    assert set(rows.loc[rows["path"].str.contains("/valid/"), "split"]) == {"test"}
    _no_shared_patients(table)
    assert any("whole patient_ids kept together" in n for n in table.notes)


def test_chexpert_root_is_the_folder_itself_uncertain_one_and_views(tmp_path):
    root = write_chexpert(tmp_path / "data") / "CheXpert-v1.0-small"
    table = _load(
        tmp_path,
        name="chexpert",
        root=str(root),
        label="pleural effusion",
        uncertain="one",
        attributes=["view"],
        published_split=True,
    )
    rows = resolved_frame(table)
    assert (
        rows["path"].str.startswith("train/").any()
        and not rows["path"].str.startswith("CheXpert").any()
    )
    assert table.attribute_values["view"] == ["AP", "LAT", "PA"]
    assert set(table.splits) == {"train", "val", "test"}  # val carved from train by patient
    _no_shared_patients(table)
    raw = pd.read_csv(root / "train.csv")
    uncertain = raw.loc[raw["Pleural Effusion"] == -1, "Path"].str.removeprefix(
        "CheXpert-v1.0-small/"
    )
    assert (rows.set_index("path").loc[list(uncertain), "y"] == 1).all()


def test_chexpert_age_bins_and_their_errors(tmp_path):
    root = write_chexpert(tmp_path / "data")
    common = dict(name="chexpert", root=str(root), label="Pleural Effusion", correlation=0.5)
    table = _load(
        tmp_path, **common, attributes=["age"], age_bins={"young": [0, 40], "old": [60, 200]}
    )
    assert table.attribute_values["age"] == ["young", "old"]  # the bins' order, not sorted
    with pytest.raises(ShortcutlabError, match=r"age_bins 'old' \[90, 120\] has no images"):
        _load(tmp_path, **common, attributes=["age"], age_bins={"young": [0, 50], "old": [90, 120]})
    with pytest.raises(ShortcutlabError, match="age_bins is required"):
        _load(tmp_path, **common, attributes=["age"])
    with pytest.raises(ShortcutlabError, match="overlap"):
        _load(tmp_path, **common, attributes=["age"], age_bins={"a": [0, 50], "b": [50, 90]})


def test_chexpert_bin_leaving_a_group_empty(tmp_path):
    root = write_chexpert(tmp_path / "data")
    raw = pd.read_csv(root / "CheXpert-v1.0-small" / "train.csv")
    raw.loc[raw["Age"] >= 70, "Pleural Effusion"] = 0.0  # no old patient has an effusion
    raw.to_csv(root / "CheXpert-v1.0-small" / "train.csv", index=False)
    with pytest.raises(ShortcutlabError, match="group y=1,age=old has no images"):
        _load(
            tmp_path,
            name="chexpert",
            root=str(root),
            label="Pleural Effusion",
            attributes=["age"],
            age_bins={"young": [0, 40], "old": [60, 200]},
        )


def test_adapter_errors_one_sentence_each(tmp_path):
    root = write_chexpert(tmp_path / "data")
    with pytest.raises(ShortcutlabError, match="unknown finding 'Effusion'.*Pleural Effusion"):
        _load(tmp_path, name="chexpert", root=str(root), label="Effusion")
    with pytest.raises(ShortcutlabError, match="chexpert has no attribute 'race'; it has: sex"):
        _load(tmp_path, name="chexpert", root=str(root), label="Cardiomegaly", attributes=["race"])
    with pytest.raises(ShortcutlabError, match="no train.csv in"):
        _load(tmp_path, name="chexpert", root=str(tmp_path), label="Cardiomegaly")
    raw = pd.read_csv(root / "CheXpert-v1.0-small" / "train.csv").drop(columns="Sex")
    raw.to_csv(root / "CheXpert-v1.0-small" / "train.csv", index=False)
    with pytest.raises(ShortcutlabError, match="train.csv has no column 'Sex'"):
        _load(tmp_path, name="chexpert", root=str(root), label="Cardiomegaly")
    with pytest.raises(ShortcutlabError, match="dataset.uncertain is read by the dataset adapters"):
        _load(tmp_path, name="synth-cxr", uncertain="drop")
    with pytest.raises(ShortcutlabError, match="did you mean 'dataset.frontal_only'"):
        _load(tmp_path, name="chexpert", root=str(root), frontal=True)


# --------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG: metadata + chexpert + split CSVs, MIMIC-IV patients.csv, files/pXX/pS/sT/
def write_mimic(root: Path, subjects: int = 32) -> Path:
    rng = np.random.default_rng(1)
    meta, labels, split, patients = [], [], [], []
    for i in range(subjects):
        sid = 10000000 + i * 1111
        patients.append([sid, ["F", "M"][i % 2], [30, 75][(i // 2) % 2], 2150, "2008 - 2010", ""])
        for k in range(2):
            study = 50000000 + i * 10 + k
            labels.append([sid, study, float(rng.integers(0, 2)) if k else [1.0, -1.0, ""][i % 3]])
            for view in ("PA", "LATERAL") if k == 0 and i % 4 == 0 else ("AP",):
                dicom = f"d{i:03d}{k}{view[0]}"
                meta.append(
                    [dicom, sid, study, "CHEST (PA AND LAT)", view, 3056, 2544, 21800506, 0.1]
                )
                split.append([dicom, study, sid, ["train", "validate", "test", "train"][i % 4]])
                _img(root / f"files/p{str(sid)[:2]}/p{sid}/s{study}/{dicom}.jpg")
    pd.DataFrame(
        meta,
        columns=[
            "dicom_id",
            "subject_id",
            "study_id",
            "PerformedProcedureStepDescription",
            "ViewPosition",
            "Rows",
            "Columns",
            "StudyDate",
            "StudyTime",
        ],
    ).to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    pd.DataFrame(labels, columns=["subject_id", "study_id", "Pleural Effusion"]).to_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv", index=False
    )
    pd.DataFrame(split, columns=["dicom_id", "study_id", "subject_id", "split"]).to_csv(
        root / "mimic-cxr-2.0.0-split.csv", index=False
    )
    (root / "hosp").mkdir()
    pd.DataFrame(
        patients,
        columns=["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
    ).to_csv(root / "hosp" / "patients.csv", index=False)
    return root


def test_mimic_joins_three_csvs_and_demographics(tmp_path):
    root = write_mimic(tmp_path / "mimic")
    table = _load(
        tmp_path,
        name="mimic-cxr",
        root=str(root),
        label="Pleural Effusion",
        attributes=["sex"],
        frontal_only=True,
        published_split=True,
    )
    rows = resolved_frame(table)
    assert rows["path"].str.match(r"files/p10/p\d{8}/s\d{8}/d\d+\w+\.jpg").all()
    assert not rows["path"].str.endswith("L.jpg").any()  # lateral dropped
    assert set(table.splits) == {"train", "val", "test"}  # validate -> val
    sex = {str(10000000 + i * 1111): ["F", "M"][i % 2] for i in range(32)}
    assert (rows["sex"] == rows["patient_id"].map(sex)).all()
    built = _load(
        tmp_path,
        name="mimic-cxr",
        root=str(root),
        label="Pleural Effusion",
        attributes=["sex"],
        correlation=0.5,
    )
    _no_shared_patients(built)


# --------------------------------------------------------------------------------------------
# NIH ChestX-ray14: 11-column header with bracketed names, pipe-separated labels, images_NNN/
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)


def write_nih(root: Path, patients: int = 30) -> Path:
    lines, test = [NIH_HEADER], []
    findings = ["Effusion", "Cardiomegaly|Effusion", "No Finding", "Atelectasis"]
    for p in range(1, patients + 1):
        for k in range(2):
            name = f"{p:08d}_{k:03d}.png"
            _img(root / f"images_{1 + p % 2:03d}" / "images" / name)
            lines.append(
                f"{name},{findings[(p + k) % 4]},{k},{p},{30 + p},{'MF'[p % 2]},"
                f"{['PA', 'AP'][k]},2500,2048,0.143,0.143"
            )
            if p > patients - 5:
                test.append(name)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return root


def test_nih_pipe_labels_bracketed_header_and_spread_images(tmp_path):
    root = write_nih(tmp_path / "nih")
    table = _load(
        tmp_path,
        name="nih-cxr14",
        root=str(root),
        label="Effusion",
        attributes=["sex"],
        correlation=0.5,
    )
    rows = resolved_frame(table)
    raw = pd.read_csv(root / "Data_Entry_2017_v2020.csv")
    truth = dict(
        zip(
            raw["Image Index"],
            raw["Finding Labels"].str.split("|").map(lambda f: int("Effusion" in f)),
        )
    )
    assert (rows["y"] == rows["path"].map(lambda p: truth[Path(p).name])).all()
    assert rows["path"].str.match(r"images_00[12]/images/").all()
    assert set(rows.loc[rows["split"] == "test", "patient_id"].astype(int)) <= set(range(26, 31))
    _no_shared_patients(table)
    with pytest.raises(
        ShortcutlabError,
        match="unknown finding 'Edema'.*Atelectasis, Cardiomegaly, Effusion, No Finding",
    ):
        _load(tmp_path, name="nih-cxr14", root=str(root), label="Edema")


# --------------------------------------------------------------------------------------------
# HAM10000 (lesion ids, two image folders) + isic_bias.csv (';'-separated)
def write_ham(root: Path, lesions: int = 48) -> Path:
    rows, bias = [], []
    dxs = ["mel", "nv", "mel", "bkl"]
    for i in range(lesions):
        for k in range(1 + i % 2):
            image = f"ISIC_{i * 2 + k:07d}"
            _img(root / f"HAM10000_images_part_{1 + i % 2}" / f"{image}.jpg", rgb=True)
            rows.append(
                [
                    f"HAM_{i:07d}",
                    image,
                    dxs[i % 4],
                    "histo",
                    5.0 * (i % 16),
                    ["male", "female", "unknown"][i % 3] if i else "male",
                    "back",
                    "rosendahl",
                ]
            )
            bias.append(f"{image}.jpg;0;1;0;0;{(i // 4) % 2};0;0;{int(dxs[i % 4] == 'mel')};x")
    pd.DataFrame(
        rows,
        columns=["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"],
    ).to_csv(root / "HAM10000_metadata.csv", index=False)
    (root / "isic_bias.csv").write_text(
        "image;dark_corner;hair;gel_border;gel_bubble;ruler;ink;patches;label;label_string\n"
        + "\n".join(bias)
        + "\n"
    )
    return root


def test_ham_dx_label_lesion_split_and_ruler_from_isic_bias(tmp_path):
    root = write_ham(tmp_path / "ham")
    table = _load(
        tmp_path,
        name="ham10000",
        root=str(root),
        label="mel",
        attributes=["ruler"],
        artifacts=["isic_bias.csv"],
        correlation=0.5,
    )
    rows = resolved_frame(table)
    meta = pd.read_csv(root / "HAM10000_metadata.csv").set_index("image_id")
    ids = rows["path"].map(lambda p: Path(p).stem)
    assert (rows["y"] == (meta.loc[ids, "dx"] == "mel").astype(int).to_numpy()).all()
    assert table.attribute_values["ruler"] == ["no", "yes"]
    ruler = ids.map(lambda s: (int(s[5:]) // 2 // 4) % 2).map({0: "no", 1: "yes"})
    assert (rows["ruler"] == ruler).all()
    _no_shared_patients(table, "lesion_id")
    multi = _load(tmp_path, name="ham10000", root=str(root), label="dx", published_split=True)
    assert multi.num_classes == 3 and any("dx as classes 0 = bkl" in n for n in multi.notes)
    (root / "HAM10000_metadata.csv").write_text("lesion_id,image_id\nHAM_1,ISIC_1\n")
    with pytest.raises(ShortcutlabError, match="HAM10000_metadata.csv has no column 'dx'"):
        _load(tmp_path, name="ham10000", root=str(root), label="mel")


# --------------------------------------------------------------------------------------------
# ISIC 2019 (one-hot ground truth + metadata) + FastDiME-Med's ruler file
def write_isic(root: Path, n: int = 64) -> Path:
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    gt, meta, rulers = [], [], []
    for i in range(n):
        image = f"ISIC_{i:07d}" + ("_downsampled" if i % 5 == 0 else "")
        _img(root / "ISIC_2019_Training_Input" / f"{image}.jpg", rgb=True)
        onehot = [0.0] * 9
        onehot[[0, 1, 0, 4][i % 4]] = 1.0
        gt.append([image, *onehot])
        meta.append(
            [
                image,
                40.0 + i % 3 * 5,
                "anterior torso",
                f"IL_{i // 2:07d}" if i % 7 else "",
                ["male", "female"][(i // 2) % 2],
            ]
        )
        rulers.append([f"ISIC_{i:07d}.jpg", (i // 4) % 2, 0, 0, "train"])
    pd.DataFrame(gt, columns=["image", *classes]).to_csv(
        root / "ISIC_2019_Training_GroundTruth.csv", index=False
    )
    pd.DataFrame(
        meta, columns=["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
    ).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    pd.DataFrame(rulers, columns=["img_name", "Ruler", "Sticker", "Ink", "split"]).to_csv(
        root / "isic_rulers.csv", index=False
    )
    return root


def test_isic2019_one_hot_metadata_and_fastdime_rulers(tmp_path):
    root = write_isic(tmp_path / "isic")
    table = _load(
        tmp_path,
        name="isic2019",
        root=str(root),
        label="MEL",
        attributes=["ruler", "sex"],
        artifacts=["isic_rulers.csv"],
        correlation=0.5,
    )
    rows = resolved_frame(table)
    idx = rows["path"].map(lambda p: int(Path(p).stem[5:12]))
    assert (rows["y"] == (idx % 2 == 0).astype(int)).all()
    assert (rows["ruler"] == ((idx // 4) % 2).map({0: "no", 1: "yes"})).all()
    assert (rows["sex"] == ((idx // 2) % 2).map({0: "M", 1: "F"})).all()
    _no_shared_patients(table, "lesion_id")
    for i in range(1, 64):  # ISIC 2018 Task 1 masks; image 0 has none
        _img(root / "masks" / f"ISIC_{i:07d}_segmentation.png", 255)
    masked = _load(
        tmp_path,
        name="isic2019",
        root=str(root),
        label="MEL",
        files={"masks": "masks"},
        correlation=0.5,
    )
    assert masked.masks is not None and masked.masks.all()
    assert not resolved_frame(masked)["path"].str.contains("ISIC_0000000").any()
    with pytest.raises(ShortcutlabError, match="unknown class 'melanoma'.*MEL, NV"):
        _load(tmp_path, name="isic2019", root=str(root), label="melanoma")


# --------------------------------------------------------------------------------------------
# Fitzpatrick17k: -1 = unknown skin type, images <md5hash>.jpg (some never downloaded)
def write_fitzpatrick(root: Path, n: int = 60) -> Path:
    rows = []
    for i in range(n):
        md5 = f"{i:032x}"
        if i != 7:
            _img(root / "images" / f"{md5}.jpg", rgb=True)
        scale = -1 if i % 10 == 9 else 1 + i % 6
        three = ["malignant", "benign", "non-neoplastic"][i % 3]
        rows.append(
            [md5, scale, scale, "psoriasis", "inflammatory", three, "", "http://x", "httpx"]
        )
    pd.DataFrame(
        rows,
        columns=[
            "md5hash",
            "fitzpatrick_scale",
            "fitzpatrick_centaur",
            "label",
            "nine_partition_label",
            "three_partition_label",
            "qc",
            "url",
            "url_alphanum",
        ],
    ).to_csv(root / "fitzpatrick17k.csv", index=False)
    return root


def test_fitzpatrick_unknown_skin_type_dropped_and_binned(tmp_path):
    root = write_fitzpatrick(tmp_path / "fitz")
    table = _load(
        tmp_path,
        name="fitzpatrick17k",
        root=str(root),
        label="malignant",
        attributes=["skin_tone"],
        skin_tone_bins={"light": [1, 3], "dark": [4, 6]},
        correlation=0.5,
    )
    rows = resolved_frame(table)
    idx = rows["path"].map(lambda p: int(Path(p).stem, 16))
    assert not (idx % 10 == 9).any() and 7 not in set(idx)  # unknown type, missing image
    assert (rows["y"] == (idx % 3 == 0).astype(int)).all()
    assert (rows["skin_tone"] == np.where(idx % 6 < 3, "light", "dark")).all()
    assert any("image is missing" in n for n in table.notes)
    cfg = AdapterConfig(
        name="fitzpatrick17k", root=root, label="malignant", attributes=["skin_tone"]
    )
    types = ADAPTERS["fitzpatrick17k"](cfg)["skin_tone"]
    assert list(types.cat.categories) == ["I", "II", "III", "IV", "V", "VI"]
    assert (types == "I").sum() == 10 and len(types) == 60 - 6 - 1  # -1 = unknown, missing


# --------------------------------------------------------------------------------------------
# Waterbirds (split 0/1/2, place) and MedMNIST (npz arrays)
def write_waterbirds(root: Path, n: int = 40) -> Path:
    rows = []
    for i in range(n):
        rel = f"{i:03d}.Bird/img_{i}.jpg"
        _img(root / rel, rgb=True)
        rows.append([i, rel, i % 2, [0, 0, 1, 2][i % 4], (i // 4) % 2, "p.jpg"])
    pd.DataFrame(
        rows, columns=["img_id", "img_filename", "y", "split", "place", "place_filename"]
    ).to_csv(root / "metadata.csv", index=False)
    return root


def test_waterbirds_uses_its_published_split(tmp_path):
    root = write_waterbirds(tmp_path / "wb")
    table = _load(tmp_path, name="waterbirds", root=str(root), attributes=["place"])
    rows = resolved_frame(table)
    assert rows["split"].value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}
    # rows are grouped by split (the image cache keeps each split contiguous): match by file
    index = rows["path"].astype(str).str.extract(r"img_(\d+)\.jpg$")[0].astype(int)
    assert (rows["place"] == [["land", "water"][(i // 4) % 2] for i in index]).all()
    assert (rows["split"] == [["train", "train", "val", "test"][i % 4] for i in index]).all()


def write_medmnist(path: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for s, k in (("train", n), ("val", n // 4), ("test", n // 4)):
        arrays[f"{s}_images"] = rng.integers(40, 120, (k, 12, 12), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(k) % 2).reshape(k, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_and_induced_marker(tmp_path):
    path = write_medmnist(tmp_path / "mm" / "pneumoniamnist.npz")
    plain = _load(tmp_path, name="medmnist", root=str(path.parent))
    assert set(plain.splits) == {"train", "val", "inv", "bal", "test"}
    assert resolved_frame(plain)["path"].str.match(r"(train|val|test)_images\[\d+\]$").all()
    table = _load(
        tmp_path, name="medmnist", root=str(path), induce={"marker": {"correlation": 0.8}}
    )
    assert table.attributes == ["marker"] and table.attribute_values["marker"] == ["no", "yes"]
    m = table.meta
    agree = (m["marker"] == m["y"]).groupby(m["split"]).mean()
    n = m["split"].value_counts()
    for s, rate in {"train": 0.8, "val": 0.8, "inv": 0.2, "bal": 0.5, "test": 0.5}.items():
        assert abs(agree[s] - rate) <= 1.0 / n[s] + 1e-9, (s, agree[s])
    assert (plain.meta["y"] == m["y"]).all()  # the same rows: the marker comes after the splits
    diff = plain.images.astype(int) != table.images.astype(int)
    rows, cols = marker_box(S)
    outside = diff.copy()
    outside[:, :, rows, cols] = False
    assert not outside.any()
    on = m["marker"].to_numpy() == 1
    assert (table.images[on][:, :, rows, cols] == 255).all()
    assert not diff[~on].any()


def test_induce_intensity_on_csv_and_refusals(tmp_path):
    root = write_csv_dataset(tmp_path / "csvdata", n=48, with_split=False)
    table = _load(
        tmp_path,
        name="csv",
        root=str(root),
        image_size=16,
        correlation=0.5,
        induce={"intensity": {"correlation": 0.9, "scale": 1.5}},
    )
    assert "intensity" in table.attributes
    with pytest.raises(ShortcutlabError, match="induce burns a shortcut into real images"):
        _load(tmp_path, name="synth-cxr", induce={"marker": {"correlation": 0.9}})


# --------------------------------------------------------------------------------------------
def test_run_writes_dataset_csv(tmp_path, capsys):
    root = write_chexpert(tmp_path / "data")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {
                    "name": "chexpert",
                    "root": str(root),
                    "label": "Pleural Effusion",
                    "attributes": ["sex"],
                    "image_size": 16,
                    "correlation": 0.6,
                    "min_group_size": 1,
                },
                "methods": ["erm"],
                "seeds": [0],
                "bootstrap": 0,
                "train": {"epochs": 1, "batch_size": 16, "feature_dim": 8, "precise_bn": 0},
            }
        )
    )
    out = tmp_path / "out"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    rows = pd.read_csv(out / "dataset.csv")
    assert list(rows.columns) == ["path", "y", "sex", "split", "patient_id"]
    assert set(rows["sex"]) == {"F", "M"} and rows["path"].str.endswith(".jpg").all()
    split_counts = pd.read_csv(out / "split_counts.csv", index_col=0)
    assert len(rows) == int(split_counts.to_numpy().sum())
