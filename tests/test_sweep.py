"""Sweeps (experiment/sweep.py), selection and statistics (experiment/selection.py,
evaluation/stats.py), the comparison report and MLflow tracking."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from scipy import stats as sps

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation import stats
from shortcutlab.experiment import selection, sweep
from shortcutlab.experiment.config import ExperimentConfig
from shortcutlab.methods import Hparam
from shortcutlab.methods.groupdro import GroupDRO
from shortcutlab.store.sweep_layout import SweepLayout

pytestmark = pytest.mark.usefixtures("one_thread")

KEYS = ["method", "trial", "seed", "split", "target", "metric"]


def _cfg(**extra) -> ExperimentConfig:
    """4 trials: erm and groupdro, the defaults and one draw, one seed; a tiny model, 2 epochs."""
    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "synth-cxr", "size": 400, "image_size": 32, "attributes": ["site"]},
            "methods": ["erm", "groupdro"],
            "seeds": [0],
            "bootstrap": 0,
            "train": {"epochs": 2, "batch_size": 32, "feature_dim": 16, "num_threads": 1},
            "sweep": {"trials": 2, "resources": {"num_cpus": 1}, "max_retries": 2},
            **extra,
        }
    )


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "local"
    sweep.run_sweep(_cfg(), out, executor="local")
    return out


# ---------------------------------------------------------------------------------------------
# draws
# ---------------------------------------------------------------------------------------------
def test_draw_zero_is_the_defaults_and_draws_repeat():
    assert sweep.draw_hparams("groupdro", 0) == {}
    first = [sweep.draw_hparams("groupdro", i) for i in range(1, 6)]
    assert first == [sweep.draw_hparams("groupdro", i) for i in range(1, 6)]
    assert set(first[0]) == {"lr", "weight_decay", "eta"}
    assert len({d["eta"] for d in first}) == 5  # every draw is a new value
    assert all(1e-3 <= d["eta"] <= 1e-1 for d in first)


def test_adding_a_hyperparameter_leaves_the_others_draws_alone(monkeypatch):
    before = [sweep.draw_hparams("groupdro", i) for i in range(1, 4)]
    extra = Hparam(1.0, "a new knob", lambda r: float(r.uniform(0, 1)))
    monkeypatch.setattr(GroupDRO, "HPARAMS", {"extra": extra, **GroupDRO.HPARAMS})
    after = [sweep.draw_hparams("groupdro", i) for i in range(1, 4)]
    for b, a in zip(before, after):
        assert set(a) == set(b) | {"extra"}
        assert {k: a[k] for k in b} == b


def test_draws_do_not_depend_on_the_process_hash_seed():
    code = (
        "from shortcutlab.experiment.sweep import draw_hparams;print(repr(draw_hparams('jtt', 2)))"
    )
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}  # another process, another hash seed
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == repr(sweep.draw_hparams("jtt", 2))


def test_hyperparameters_the_config_sets_are_not_drawn():
    cfg = _cfg(hparams={"groupdro": {"eta": 0.05}})
    plan = sweep.plan_trials(cfg, trials=3)
    assert len(plan) == 2 * 3  # methods x draws x seeds
    dro = [t for t in plan if t.method == "groupdro"]
    assert all("eta" not in t.params for t in dro)
    assert {sweep.trial_hparams(cfg, t)["eta"] for t in dro} == {0.05}
    assert len({sweep.trial_hparams(cfg, t)["lr"] for t in dro}) == 3


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
def test_sweep_writes_merged_results_and_trials(local_sweep):
    results = pd.read_csv(local_sweep / "results.csv")
    trials = pd.read_csv(local_sweep / "trials.csv")
    assert list(results.columns[:3]) == ["method", "trial", "seed"]
    assert not results.duplicated(KEYS).any()
    assert set(map(tuple, results[["method", "trial", "seed"]].drop_duplicates().values)) == {
        ("erm", 0, 0),
        ("erm", 1, 0),
        ("groupdro", 0, 0),
        ("groupdro", 1, 0),
    }
    assert (trials["status"] == "done").all() and len(trials) == 4
    dro = trials[trials["method"] == "groupdro"].set_index("trial")
    assert dro.loc[0, "eta"] == 0.01  # trial 0: the defaults
    assert dro.loc[1, "eta"] == pytest.approx(sweep.draw_hparams("groupdro", 1)["eta"])
    assert SweepLayout(local_sweep).trial("groupdro", 1, 0).is_finished()


def test_rerun_skips_finished_trials_and_redoes_an_unfinished_one(
    local_sweep, tmp_path, monkeypatch
):
    out = tmp_path / "again"
    shutil.copytree(local_sweep, out)
    SweepLayout(out).trial("erm", 1, 0).done.unlink()
    calls = []
    real = sweep.run_trial

    def counting(cfg, trial, layout, **kw):
        calls.append((trial.method, trial.draw, trial.seed))
        return real(cfg, trial, layout, **kw)

    monkeypatch.setattr(sweep, "run_trial", counting)
    again = sweep.run_sweep(_cfg(), out, executor="local")
    assert calls == [("erm", 1, 0)]
    before = pd.read_csv(local_sweep / "results.csv")
    pd.testing.assert_frame_equal(_sorted(again), _sorted(before))


def test_ctrl_c_leaves_the_trial_unfinished_and_a_rerun_continues_it(tmp_path):
    out = tmp_path / "interrupted"
    cfg = _cfg(methods=["erm"], sweep={"trials": 1})

    def interrupt(trial, done, total):
        if done * 2 > total:  # in epoch 1 (epoch 0's checkpoint is written)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(cfg, out, executor="local", hook=interrupt)
    run = SweepLayout(out).trial("erm", 0, 0)
    assert not run.done.exists() and run.file("resume.pt").exists()
    assert pd.read_csv(out / "trials.csv")["status"].tolist() == ["pending"]
    assert pd.read_csv(out / "results.csv").empty
    results = sweep.run_sweep(cfg, out, executor="local")
    assert json.loads(run.done.read_text())["compute"]["resumed_from_epoch"] == 0
    assert not results.empty and not results.duplicated(KEYS).any()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook below, in workers
    try:
        yield ray
    finally:
        ray.shutdown()


def _kill_once(marker: str, victim: tuple, trial, done: int, total: int) -> None:
    """SIGKILL this worker process once, right after the victim trial's first epoch."""
    if (trial.method, trial.draw, trial.seed) != victim or done * 2 <= total:
        return
    if os.path.exists(marker):
        return  # the retry runs on
    Path(marker).write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow  # minutes: a local Ray, four trials, one retried (make test-slow; CI runs it)
def test_ray_sweep_survives_a_killed_worker_and_matches_local(local_ray, local_sweep, tmp_path):
    out = tmp_path / "ray"
    marker = tmp_path / "killed"
    victim = ("groupdro", 1, 0)
    hook = functools.partial(_kill_once, str(marker), victim)
    results = sweep.run_sweep(_cfg(), out, executor="ray", hook=hook)
    assert marker.exists()  # a worker died mid-trial
    assert int(marker.read_text()) != os.getpid()
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["status"] == "done").all()
    assert not results.duplicated(KEYS).any()
    assert len(results[["method", "trial", "seed"]].drop_duplicates()) == 4
    done = json.loads(SweepLayout(out).trial(*victim).done.read_text())
    assert done["compute"]["resumed_from_epoch"] == 0  # the retry continued from epoch 0
    # same trials, same numbers: Ray (with a retry) against the in-process executor
    local = pd.read_csv(local_sweep / "results.csv")
    pd.testing.assert_frame_equal(_sorted(results), _sorted(local))


# ---------------------------------------------------------------------------------------------
# selection and statistics
# ---------------------------------------------------------------------------------------------
def _toy_results() -> pd.DataFrame:
    """erm and jtt, 2 trials, 5 seeds: jtt's trial 1 is best on bal but worse on val."""
    rows = []
    rng = np.random.default_rng(0)
    for method, base in (("erm", 0.3), ("jtt", 0.5)):
        for trial in (0, 1):
            for seed in range(5):
                val = base + (0.1 if trial == 0 else 0.0) + 0.01 * seed
                bal = base + (0.0 if trial == 0 else 0.2) + 0.02 * rng.standard_normal()
                for split, value in (("val", val), ("bal", bal), ("inv", bal - 0.05)):
                    for metric in ("accuracy", "worst_group_accuracy"):
                        rows.append([method, trial, seed, split, "y", metric, value])
    return pd.DataFrame(rows, columns=KEYS + ["value"])


def test_selection_reads_val_and_the_oracle_is_labelled():
    results = _toy_results()
    assert selection.select_trials(results, "val_worst_group") == {"erm": 0, "jtt": 0}
    table = selection.selected_table(results, "val_worst_group", oracle=True)
    assert set(table[table["selection"] == "val"]["trial"]) == {0}
    oracle = table[table["selection"] != "val"]
    assert set(oracle["selection"]) == {"oracle (test-selected: bal)"}
    assert set(oracle["trial"]) == {1}
    assert "oracle" not in " ".join(selection.selected_table(results, "val_average")["selection"])


def test_summaries_and_paired_differences_match_scipy():
    values = np.array([0.61, 0.70, 0.64, 0.72, 0.69, 0.66])
    s = stats.summarize(values, seed=3)
    assert s["mean"] == pytest.approx(values.mean()) and s["std"] == pytest.approx(
        values.std(ddof=1)
    )
    ref = sps.bootstrap(
        (values,),
        np.mean,
        n_resamples=stats.N_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((ref.low, ref.high))
    assert s["ci_low"] < s["mean"] < s["ci_high"]

    base = pd.Series([0.5, 0.55, 0.52, 0.6, 0.58, 0.54])
    method = pd.Series(values)
    p = stats.paired(method, base)
    assert p["mean_diff"] == pytest.approx((method - base).mean())
    assert p["wilcoxon_p"] == pytest.approx(sps.wilcoxon(method - base).pvalue)
    assert np.isnan(stats.paired(method[:4], base[:4])["wilcoxon_p"])  # under 5 pairs
    # only the seeds both have are paired
    assert stats.paired(method, base.drop(index=[0, 1]))["n"] == 4


def test_rank_test_matches_scipy_and_demsar_table():
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(rng.uniform(size=(10, 4)), columns=list("abcd"))
    scores["a"] += 1.0  # a is best everywhere
    test = stats.rank_test(scores)
    assert test.mean_ranks["a"] == 1.0
    ref = sps.friedmanchisquare(*[scores[c] for c in scores.columns])
    assert test.friedman_p == pytest.approx(ref.pvalue)
    assert test.nemenyi.shape == (4, 4)
    # Demsar (2006), table 5: q_0.05 = 2.569 for 4 methods; CD = q sqrt(k (k + 1) / (6 N))
    assert test.critical_difference == pytest.approx(2.569 * np.sqrt(4 * 5 / 60), abs=2e-3)
    two = stats.rank_test(scores[["a", "b"]])
    assert np.isnan(two.friedman_p) and two.nemenyi is None


# ---------------------------------------------------------------------------------------------
# report, tracking, command line
# ---------------------------------------------------------------------------------------------
def test_compare_report_over_two_studies(local_sweep, tmp_path):
    from shortcutlab.report.compare import build_comparison

    report = build_comparison([local_sweep, local_sweep], tmp_path / "cmp", oracle=True)
    page = report.read_text()
    assert "selected on val" in page and "oracle (test-selected: bal)" in page
    assert "paired differences against erm" in page and "Mean rank" in page
    names = {p.name for p in (tmp_path / "cmp" / "figures").glob("*.png")}
    assert "report_ranks.png" in names
    assert any(n.startswith("report_sensitivity_") and "groupdro" in n for n in names)
    assert any(n.startswith("report_paired_") for n in names)


def test_mlflow_tracking_logs_every_trial(local_sweep, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from shortcutlab.tracking import log_sweep

    uri = (tmp_path / "store").as_uri()
    log_sweep(local_sweep, uri, experiment="t")
    runs = mlflow.search_runs(experiment_names=["t"])
    trials = runs[runs["params.method"].notna()]
    assert len(runs) == 5 and len(trials) == 4
    results = pd.read_csv(local_sweep / "results.csv")
    row = trials[(trials["params.method"] == "groupdro") & (trials["params.trial"] == "1")]
    want = results[
        (results["method"] == "groupdro")
        & (results["trial"] == 1)
        & (results["split"] == "inv")
        & (results["metric"] == "accuracy")
    ]["value"]
    assert row["metrics.inv/y/accuracy"].iloc[0] == pytest.approx(want.iloc[0])
    assert float(row["params.eta"].iloc[0]) == pytest.approx(
        sweep.draw_hparams("groupdro", 1)["eta"]
    )


def test_missing_mlflow_is_one_sentence(monkeypatch):
    from shortcutlab.tracking import mlflow_module

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ShortcutlabError, match=r"pip install 'shortcutlab\[track\]'"):
        mlflow_module()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be 1 or more"),
        (["--executor", "slurm"], "--executor must be local or ray"),
        (["--track", "wandb"], "--track supports mlflow"),
        (["--address", "10.0.0.1:6379"], "--address joins a Ray cluster"),
        (["methods=[erm,nosuch]"], "nosuch"),
    ],
)
def test_sweep_mistakes_exit_2_with_one_sentence(args, message, tmp_path, capsys):
    code, _, err = run_cli(["sweep", "--preset", "quick", "--out", tmp_path / "o", *args], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_compare_of_a_missing_folder_exits_2(tmp_path, capsys):
    code, _, err = run_cli(["compare", tmp_path / "nope", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["compare", tmp_path / "empty", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "has no results.csv" in err


def test_cli_sweep_writes_the_folder_and_a_rerun_skips(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", "--preset", "quick", "--trials", "1", "--out", out, "methods=[erm]"]
    args += ["dataset.size=400", "dataset.image_size=32", "train.epochs=1", "bootstrap=0"]
    args += ["train.batch_size=32", "train.feature_dim=16", "train.num_threads=1"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "selected on val" in stdout
    assert (out / "report.html").is_file() and (out / "trials.csv").is_file()
    code, _, err = run_cli(args, capsys)
    assert code == 0 and "1 of 1 trials finished before, skipped" in err
    code, _, err = run_cli(["report", out], capsys)  # a sweep's report is its comparison page
    assert code == 0 and "shortcutlab comparison" in (out / "report.html").read_text()
