"""Build ``report.html`` (self-contained, plots embedded) and ``summary.md`` from a run folder."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from shortcutlab.errors import ShortcutlabError
from shortcutlab.report import figures
from shortcutlab.store.results import read_results, write_text_atomic

EVAL_SPLITS = ["val", "inv", "bal", "test", "target"]


def _fmt(mean: float, std: float, n: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if n > 1 and np.isfinite(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{100 * mean:.1f}"


def headline_table(results: pd.DataFrame) -> pd.DataFrame:
    """Method x split: accuracy and worst-group accuracy (mean ± std over seeds, in %)."""
    y = results[results["target"] == "y"]
    splits = [s for s in EVAL_SPLITS if s in set(y["split"])]
    methods = list(dict.fromkeys(y["method"]))
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for metric, short in (("accuracy", "acc"), ("worst_group_accuracy", "worst group")):
        for split in splits:
            part = y[(y["metric"] == metric) & (y["split"] == split)]
            stats = part.groupby("method")["value"].agg(["mean", "std", "count"])
            table[f"{split} {short}"] = [
                _fmt(*stats.loc[m]) if m in stats.index else "n/a" for m in methods
            ]
    if "val" in splits and "inv" in splits:
        acc = y[y["metric"] == "accuracy"].groupby(["method", "split"])["value"].mean().unstack()
        table["val→inv drop"] = [
            f"{100 * (acc.loc[m, 'val'] - acc.loc[m, 'inv']):.1f}" for m in methods
        ]
    seeds = results.groupby("method")["seed"].nunique()
    table["seeds"] = [int(seeds.get(m, 0)) for m in methods]
    return table


def fairness_table(results: pd.DataFrame) -> pd.DataFrame:
    gaps = results[results["metric"].isin(["dp_gap", "eopp_gap", "eodds_gap"])]
    if gaps.empty:
        return pd.DataFrame()
    gaps = gaps[gaps["split"].isin(EVAL_SPLITS)]
    t = gaps.groupby(["method", "target", "split", "metric"])["value"].mean().unstack("metric")
    return (t * 100).round(1)


def metric_table(results: pd.DataFrame) -> pd.DataFrame:
    """Everything else for target y: AUROC, balanced accuracy, ECE by method and split."""
    keep = ["balanced_accuracy", "auroc", "ece"]
    part = results[(results["target"] == "y") & results["metric"].isin(keep)]
    part = part[part["split"].isin(EVAL_SPLITS)]
    if part.empty:
        return pd.DataFrame()
    t = part.groupby(["method", "split", "metric"])["value"].mean().unstack("metric")
    return (t * 100).round(1)


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _read_logs(run_dir: Path) -> dict[str, list[dict]]:
    logs = {}
    for path in sorted(run_dir.glob("*/seed_*/log.jsonl")):
        label = f"{path.parent.parent.name} s{path.parent.name.removeprefix('seed_')}"
        logs[label] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return logs


def build_report(run_dir: str | Path) -> Path:
    """Rebuild report.html and summary.md of a finished run folder."""
    run_dir = Path(run_dir)
    res_path = run_dir / "results.csv"
    if not res_path.is_file():
        raise ShortcutlabError(f"{run_dir} has no results.csv; is it a finished run folder?")
    results = read_results(res_path)
    config = (
        yaml.safe_load((run_dir / "config.yaml").read_text())
        if (run_dir / "config.yaml").exists()
        else {}
    )
    headline = headline_table(results)
    summary = (
        f"# shortcutlab results: {config.get('dataset', {}).get('name', run_dir.name)}\n\n"
        "Accuracy and worst-group accuracy (%) on val (with the shortcut), inv (against it) and bal "
        "(without it); mean ± std over seeds. Models were selected on val only "
        f"(`{config.get('select', '?')}`).\n\n" + headline.to_markdown() + "\n"
    )
    write_text_atomic(summary, run_dir / "summary.md")

    figs = {}
    if not results.empty:
        figs["shift"] = _b64(figures.shift_plot(results))
        figs["groups"] = _b64(figures.group_bars(results))
    logs = _read_logs(run_dir)
    if logs:
        key = config.get("select", "val_worst_group")
        figs["curves"] = _b64(figures.training_curves(logs, key))
    if (run_dir / "samples.png").exists():
        figs["samples"] = _b64((run_dir / "samples.png").read_bytes())
    extra_figs = sorted(run_dir.glob("figures/*.png"))
    split_counts = None
    if (run_dir / "split_counts.csv").exists():
        split_counts = pd.read_csv(run_dir / "split_counts.csv", index_col=0)

    env = Environment(
        loader=PackageLoader("shortcutlab", "report/templates"), autoescape=select_autoescape()
    )
    html = env.get_template("report.html").render(
        title=f"shortcutlab report: {config.get('dataset', {}).get('name', run_dir.name)}",
        config_yaml=yaml.safe_dump(config, sort_keys=False),
        headline=headline.to_html(classes="tbl", border=0),
        fairness=fairness_table(results).to_html(classes="tbl", border=0)
        if not results.empty
        else "",
        metrics=metric_table(results).to_html(classes="tbl", border=0) if not results.empty else "",
        split_counts=split_counts.to_html(classes="tbl", border=0)
        if split_counts is not None
        else "",
        figs=figs,
        extra_figs=[(p.stem.replace("_", " "), _b64(p.read_bytes())) for p in extra_figs],
    )
    write_text_atomic(html, run_dir / "report.html")
    return run_dir / "report.html"
