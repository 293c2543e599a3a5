"""Optional experiment tracking with MLflow (``shortcutlab sweep --track mlflow``; extra
``track``: ``mlflow-skinny``). Nothing here is imported unless tracking is asked for.

A finished sweep folder (docs/contracts.md, "Sweep folder") is logged to a local MLflow file
store (``OUT/mlruns`` unless a tracking URI is given; no server): one parent run for the sweep
(its config as parameters; ``results.csv``, ``trials.csv`` and ``report.html`` as artifacts) and
one nested run per finished trial (method, trial, seed and every hyperparameter as parameters;
its results rows as metrics named ``<split>/<target>/<metric>``; its ``results.csv``,
``log.jsonl`` and ``done.json`` as artifacts). Logging again logs a new parent run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from shortcutlab.errors import ShortcutlabError
from shortcutlab.store.sweep_layout import SweepLayout

_NOT_HPARAMS = {"status", "seconds", "error"}


def mlflow_module():
    """``mlflow``, or a one-sentence error naming the extra that installs it."""
    try:
        import mlflow
    except ImportError:
        raise ShortcutlabError(
            "--track mlflow needs MLflow: pip install 'shortcutlab[track]' (make install does)"
        ) from None
    return mlflow


def metric_key(split: str, target: str, metric: str) -> str:
    """An MLflow metric name (letters, digits, ``_ - . /`` and spaces only)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", f"{split}/{target}/{metric}")


def log_sweep(root: str | Path, uri: str | None = None, experiment: str | None = None) -> str:
    """Log the sweep folder ``root``; return the tracking URI used."""
    mlflow = mlflow_module()
    root = Path(root)
    layout = SweepLayout(root)
    if not layout.trials_csv.is_file():
        raise ShortcutlabError(f"{root} has no trials.csv; --track logs a finished sweep folder")
    uri = uri or (root / "mlruns").resolve().as_uri()
    if uri.startswith("file:"):
        # MLflow 3 keeps the file store in maintenance and asks for this opt-in; it is the
        # store that needs no server and no database
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment or root.resolve().name)
    trials = pd.read_csv(layout.trials_csv)
    results = pd.read_csv(layout.experiment.results)
    top = layout.experiment
    with mlflow.start_run(run_name=root.name):
        mlflow.log_params({"trials": int(trials["trial"].max()) + 1, "folder": str(root)})
        for path in (top.config, top.results, layout.trials_csv, top.report):
            if path.is_file():
                mlflow.log_artifact(str(path))
        for _, t in trials[trials["status"] == "done"].iterrows():
            method, trial, seed = str(t["method"]), int(t["trial"]), int(t["seed"])
            run = layout.trial(method, trial, seed)
            rows = results[
                (results["method"] == method)
                & (results["trial"] == trial)
                & (results["seed"] == seed)
            ]
            with mlflow.start_run(run_name=f"{method}-t{trial}-s{seed}", nested=True):
                params = {"method": method, "trial": trial, "seed": seed}
                params.update(
                    {
                        k: v
                        for k, v in t.items()
                        if k not in _NOT_HPARAMS and k not in params and pd.notna(v)
                    }
                )
                mlflow.log_params(params)
                metrics = {
                    metric_key(r.split, r.target, r.metric): float(r.value)
                    for r in rows.itertuples()
                    if pd.notna(r.value)
                }
                mlflow.log_metrics(metrics)
                for path in (run.results, run.log, run.done):
                    if path.is_file():
                        mlflow.log_artifact(str(path))
    return uri
