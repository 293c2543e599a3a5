"""``swift`` inside ``run``, and the ``debias`` and ``audit`` commands end to end on CSV data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli, write_config, write_csv_dataset

from shortcutlab.data.sources import make_synthetic
from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.posthoc import external_rows
from shortcutlab.store.results import RESULT_COLUMNS


def test_external_split_is_disjoint_from_train_and_the_selection_split():
    fractions = {"train": 0.6, "val": 0.15, "inv": 0.125, "bal": 0.125, "external": 0.1}
    table = make_synthetic("synth-derm", 400, ["skin_tone"], 0.9, 0, 32, fractions=fractions)
    split = table.meta["split"].astype(str).to_numpy()
    rows = external_rows(table)
    assert len(rows) == 40 and set(split[rows]) == {"external"}
    # no external image is pixel-identical to a train or val image
    ext = {table.images[i].tobytes() for i in rows}
    used = {table.images[i].tobytes() for i in np.flatnonzero(np.isin(split, ["train", "val"]))}
    assert len(ext) == len(rows) and not ext & used
    # drawn like train: the attribute agrees with the label in most external rows
    meta = table.meta.iloc[rows]
    assert (meta["y"] == meta["skin_tone"]).mean() == pytest.approx(0.9, abs=0.05)
    without = make_synthetic("synth-derm", 400, ["skin_tone"], 0.9, 0, 32)
    with pytest.raises(ShortcutlabError, match="needs an 'external' split"):
        external_rows(without)


def test_swift_in_run_then_debias_and_audit_a_checkpoint(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=480, correlation=0.8, external=60)
    hp = {"swift": {"attribute": "site", "step1_epochs": 2, "step2_epochs": 2, "batch_size": 16}}
    train = {"epochs": 2, "batch_size": 32, "feature_dim": 16, "num_threads": 1}
    cfg = write_config(
        tmp_path / "cfg.yaml", root, methods=["erm", "swift"], hparams=hp, train=train
    )
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    record = json.loads((out / "swift" / "seed_0" / "swift.json").read_text())
    assert record["attribute"] == "site" and 0 < record["balanced_rows"] <= record["external_rows"]
    steps = [h["step"] for h in record["history"]]
    assert steps.count(1) == 2 and steps.count(2) == 3  # 2 epochs each + the head reset record
    done = json.loads((out / "swift" / "seed_0" / "done.json").read_text())
    erm_done = json.loads((out / "erm" / "seed_0" / "done.json").read_text())
    # the external set is carved from train, and SWiFT's samples are counted in the run's compute
    swift_samples = record["compute"]["samples_processed"]
    assert swift_samples == (2 + 2 + 1) * record["balanced_rows"]
    assert 0 < done["compute"]["samples"] - swift_samples < erm_done["compute"]["samples"]

    ckpt = out / "erm" / "seed_0" / "checkpoint.pt"
    dout = tmp_path / "debias"
    args = ["debias", ckpt, "--data", cfg, "--attribute", "site"]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, stdout, err = run_cli([*args, "--out", dout], capsys)
        assert torch.get_num_threads() == 2  # train.num_threads=1 applied inside only
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    res = pd.read_csv(dout / "results.csv")
    assert list(res.columns) == RESULT_COLUMNS
    assert set(res["method"]) == {"erm", "erm+swift"}
    assert {"external", "val", "inv", "bal"} <= set(res["split"])
    assert (res[res.metric == "eodds_gap"].groupby("method").size() > 0).all()
    compute = json.loads((dout / "compute.json").read_text())
    assert (
        compute["attribute"] == "site" and compute["external_rows"] == 60
    )  # the split=external rows
    assert compute["samples_fraction"] == compute["swift_samples"] / compute["original_samples"]
    assert (dout / "report.html").exists() and "before -> after" in stdout

    code, _, err = run_cli([*args, "--out", dout, "--mask", "hard"], capsys)
    assert code == 0, err
    assert json.loads((dout / "compute.json").read_text())["mask"] == "hard"

    # --external-fraction: that share of train's size, taken from the external split
    n_train = int((pd.read_csv(root / "metadata.csv")["split"] == "train").sum())
    code, _, err = run_cli([*args, "--out", dout, "--external-fraction", "0.1"], capsys)
    assert code == 0, err
    used = json.loads((dout / "compute.json").read_text())["external_rows"]
    assert abs(used - 0.1 * n_train) <= 2  # stratified by group: rounding per group
    code, _, err = run_cli([*args, "--out", dout, "--external-fraction", "0.9"], capsys)
    assert code == 2 and "the external split has 60" in " ".join(err.split())

    aout = tmp_path / "audit"
    code, stdout, err = run_cli(["audit", ckpt, "--data", cfg, "--out", aout], capsys)
    assert code == 0, err
    # the terminal headline: per split accuracy, gaps with their CIs, probe leakage
    text = " ".join(stdout.split())
    assert "audit of erm" in text and "site eodds_gap" in text and "probe leakage" in text
    res = pd.read_csv(aout / "results.csv")
    site = res[(res.target == "site") & (res.split == "bal")].set_index("metric")["value"]
    assert site["eodds_gap_ci_low"] <= site["eodds_gap"] <= site["eodds_gap_ci_high"]
    # the audit's probe is the runner's: fit on val, weighted so y cannot stand in for site; the
    # marker is a saturated corner, so the ERM encoder carries it well above chance
    assert site["probe_accuracy[f]"] > 0.9
    assert "group_accuracy[y=1,site=A]" in set(res["metric"])  # the CSV's category names


def test_debias_mistakes_give_one_sentence(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=240)
    cfg = write_config(tmp_path / "cfg.yaml", root)
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.epochs=1"], capsys)
    assert code == 0, err
    ckpt = out / "erm" / "seed_0" / "checkpoint.pt"
    cases = [
        (["--attribute", "sex"], "SWiFT attribute 'sex' is not one of: site"),
        (["--mask", "medium"], "--mask must be soft or hard"),
    ]
    # no split=external rows in this CSV: one sentence, no traceback
    cases.append(([], "debias needs an 'external' split disjoint from train and val"))
    for extra, message in cases:
        code, _, err = run_cli(["debias", ckpt, "--data", cfg, "--out", out / "d", *extra], capsys)
        assert code == 2 and message in " ".join(err.split()), err
    code, _, err = run_cli(["audit", out / "nope.pt", "--data", cfg, "--out", out / "a"], capsys)
    assert code == 2 and "does not exist" in err


def test_audit_opens_a_feature_split_checkpoint_with_the_same_predictions(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=240)
    cfg = write_config(
        tmp_path / "cfg.yaml",
        root,
        methods=["mimmx"],
        hparams={"mimmx": {"f_y_dim": 8, "f_z_dim": 4, "n_b": 2, "mine_hidden": 16}},
        train={"epochs": 1, "batch_size": 32},
    )
    out = tmp_path / "runs"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    ckpt = out / "mimmx" / "seed_0" / "checkpoint.pt"
    code, _, err = run_cli(["audit", ckpt, "--data", cfg, "--out", tmp_path / "a"], capsys)
    assert code == 0, err

    def accuracy(path):
        res = pd.read_csv(path)
        sel = (res.split == "val") & (res.target == "y") & (res.metric == "accuracy")
        return res[sel]["value"].iloc[0]

    # the task head on f_y, loaded as a linear head on all features, predicts the same
    assert accuracy(tmp_path / "a" / "results.csv") == pytest.approx(
        accuracy(out / "mimmx" / "seed_0" / "results.csv")
    )
