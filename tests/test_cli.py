"""The CLI end to end on a CSV + PNG dataset, and one clear sentence for every user mistake."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import run_cli, write_config, write_csv_dataset

from shortcutlab.store.results import RESULT_COLUMNS


def test_csv_dataset_with_split_column_runs_and_resumes(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=240, with_split=True)
    cfg = write_config(tmp_path / "cfg.yaml", root, methods=["erm", "rebalance"])
    out = tmp_path / "out"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.epochs=2"], capsys)
    assert code == 0, err
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results["method"]) == {"erm", "rebalance"}
    assert {"train", "val", "inv", "bal"} <= set(results["split"])
    assert {"accuracy", "auroc", "worst_group_accuracy", "eodds_gap", "ece"} <= set(
        results["metric"]
    )
    for name in ("report.html", "summary.md", "config.yaml"):
        assert (out / name).stat().st_size > 0
    assert (out / "erm" / "seed_0" / "checkpoint.pt").exists()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table" in html

    # resume: finished runs are skipped (their files untouched), nothing is duplicated
    done = out / "erm" / "seed_0" / "done.json"
    stamp = done.stat().st_mtime_ns
    # an interrupted run (no done.json) is redone
    (out / "rebalance" / "seed_0" / "done.json").unlink()
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.epochs=2"], capsys)
    assert code == 0, err
    assert done.stat().st_mtime_ns == stamp
    assert (out / "rebalance" / "seed_0" / "done.json").exists()
    again = pd.read_csv(out / "results.csv")
    assert len(again) == len(results)
    assert json.loads(done.read_text())["method"] == "erm"

    # a folder written before a setting existed (stored config lacks it; its default changes
    # nothing) still resumes
    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["dataset"]["target_domain"]
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.epochs=2"], capsys)
    assert code == 0, err
    assert done.stat().st_mtime_ns == stamp

    # a changed training section into the same folder is refused rather than mixed
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.epochs=3"], capsys)
    assert code == 2 and "different 'train' section" in err

    # report rebuilds from the folder alone
    (out / "report.html").unlink()
    code, _, err = run_cli(["report", out], capsys)
    assert code == 0 and (out / "report.html").exists()


def test_only_runs_the_named_entries(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=120, with_split=True)
    cfg = write_config(tmp_path / "cfg.yaml", root, methods=["erm", "rebalance", "groupdro"])
    out = tmp_path / "out"
    args = ["run", cfg, "--out", out, "--quiet", "train.epochs=1"]
    code, _, err = run_cli([*args, "--only", "groupdro,erm"], capsys)
    assert code == 0, err
    assert set(pd.read_csv(out / "results.csv")["method"]) == {"erm", "groupdro"}
    assert not (out / "rebalance").exists()
    code, _, err = run_cli([*args, "--only", "rebalnce"], capsys)
    assert code == 2 and "no method entry named 'rebalnce'" in " ".join(err.split())
    assert "erm, rebalance, groupdro" in " ".join(err.split())


def test_csv_dataset_without_split_column_gets_built_splits(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=400, with_split=False)
    cfg = write_config(tmp_path / "cfg.yaml", root)
    code, _, err = run_cli(
        ["run", cfg, "--out", tmp_path / "out", "--quiet", "train.epochs=1"], capsys
    )
    assert code == 0, err
    counts = pd.read_csv(tmp_path / "out" / "split_counts.csv", index_col=0)
    assert set(counts.columns) == {"train", "val", "inv", "bal"}
    # train has the shortcut, inv the opposite; groups named by the CSV's categories
    assert counts.loc["y=0,site=A", "train"] > counts.loc["y=0,site=B", "train"]
    assert counts.loc["y=0,site=A", "inv"] < counts.loc["y=0,site=B", "inv"]


def _bad(tmp_path, mutate):
    root = write_csv_dataset(tmp_path / "data", n=60, with_split=True)
    meta = pd.read_csv(root / "metadata.csv")
    meta = mutate(root, meta)
    if meta is not None:
        meta.to_csv(root / "metadata.csv", index=False)
    return write_config(tmp_path / "cfg.yaml", root)


def _corrupt(root, meta):
    (root / meta.loc[3, "path"]).write_bytes(b"this is not a png")
    return meta


def _missing_file(root, meta):
    (root / meta.loc[5, "path"]).unlink()
    return meta


def _non_integer(root, meta):
    meta["y"] = meta["y"].astype(object)
    meta.loc[2, "y"] = "maybe"
    return meta


def _empty_group(root, meta):
    meta.loc[(meta["y"] == 1), "site"] = "B"
    return meta


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_corrupt, r"cannot read image .*3\.png"),
        (_missing_file, r"image 'images/5\.png' \(column 'path'\) does not exist"),
        (lambda r, m: m.drop(columns="site"), r"has no column 'site'"),
        (_non_integer, r"row 4: label 'y' must be an integer class id, got 'maybe'"),
        (_empty_group, r"group y=1,site=A has no images|single value"),
    ],
)
def test_bad_data_gives_one_sentence_and_exit_2(tmp_path, capsys, mutate, message):
    cfg = _bad(tmp_path, mutate)
    if mutate is _empty_group:  # the split builder (no split column) must report the empty group
        meta = pd.read_csv(tmp_path / "data" / "metadata.csv").drop(columns="split")
        meta.to_csv(tmp_path / "data" / "metadata.csv", index=False)
    code, out, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one sentence (rich may wrap it)
    import re

    assert re.search(message, " ".join(err.split())), err


@pytest.mark.parametrize(
    "args, message",
    [
        (["methods=[erm,magic]"], "unknown method 'magic'"),
        (["dataset.name=synth-lung"], "unknown dataset 'synth-lung'"),
        (["train.backbone=vgg"], "unknown backbone 'vgg'"),
        (["hparams.groupdro.etaa=1"], "'etaa' is not a hyperparameter of groupdro"),
        (["hparams.groupdro.eta=x"], "hparams.groupdro.eta must be a number, not 'x'"),
    ],
)
def test_bad_names_give_one_sentence(tmp_path, capsys, args, message):
    root = write_csv_dataset(tmp_path / "data", n=60)
    cfg = write_config(tmp_path / "cfg.yaml", root)
    if args[0].startswith("dataset.name"):
        args = ["dataset.root=null", *args]
    code, _, err = run_cli(["run", cfg, "--out", tmp_path / "out", "--quiet", *args], capsys)
    assert code == 2, err
    assert message in " ".join(err.split())


def test_malformed_yaml_and_missing_config(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: csv\n")
    code, _, err = run_cli(["run", bad], capsys)
    assert code == 2 and "not valid YAML" in err
    code, _, err = run_cli(["run", tmp_path / "none.yaml"], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(["report", tmp_path / "nowhere"], capsys)
    assert code == 2 and "does not exist" in err


def test_methods_and_datasets_listings(capsys):
    code, out, _ = run_cli(["methods"], capsys)
    assert code == 0
    for name in ("erm", "rebalance", "groupdro", "eta"):
        assert name in out
