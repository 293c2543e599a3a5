"""Build ``report.html`` and ``summary.md`` from a run folder (``shortcutlab run``) or an audit
folder (``shortcutlab audit``).

``report.html`` is one self-contained file (figures embedded as PNG). Every figure of the report
is also written to ``figures/report_<name>.pdf`` (vector) and ``figures/report_<name>.png``
(300 dpi). Methods appear in config order with one colour each in every figure and table.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from shortcutlab import __version__
from shortcutlab.errors import ShortcutlabError
from shortcutlab.report import figures
from shortcutlab.report.reliance import attribution_table, reliance_figure, reliance_table
from shortcutlab.store.layout import ExperimentLayout
from shortcutlab.store.results import read_results, write_text_atomic

EVAL_SPLITS = figures.EVAL_SPLITS
ReportKind = Literal["auto", "run", "audit"]


# ---------------------------------------------------------------------------------------------
# what every number means
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    label: str
    meaning: str
    better: str


DEFINITIONS: dict[str, Definition] = {
    "accuracy": Definition(
        "accuracy",
        "share of the split's images whose predicted class is the label; its interval is the "
        "95% percentile bootstrap over the split's images",
        "higher is better; chance = 1 / number of classes",
    ),
    "worst_group_accuracy": Definition(
        "worst-group accuracy",
        "the lowest accuracy over the joint (y, attributes) groups present in the split",
        "higher is better; a model that uses the shortcut fails the groups where label and "
        "attribute disagree",
    ),
    "group_accuracy": Definition(
        "group accuracy",
        "accuracy on the images of one joint (y, attributes) group; n = its number of images in "
        "the split; interval: 95% Wilson interval from n",
        "higher is better",
    ),
    "drop": Definition(
        "val→inv drop",
        "val accuracy minus inv accuracy, in points: val has the training correlation between "
        "label and attribute, inv the opposite",
        "lower is better; near 0 = no reliance on the shortcut visible",
    ),
    "balanced_accuracy": Definition(
        "balanced accuracy",
        "mean over classes of the accuracy within the class (recall)",
        "higher is better; chance = 1 / number of classes",
    ),
    "auroc": Definition(
        "AUROC",
        "area under the ROC curve of the predicted probability (one-vs-rest macro average for "
        "more than two classes)",
        "higher is better; 50% = chance",
    ),
    "ece": Definition(
        "ECE",
        "expected calibration error: over 15 equal-width confidence bins, the size-weighted mean "
        "of |accuracy − mean confidence|",
        "lower is better; 0 = calibrated",
    ),
    "dp_gap": Definition(
        "dp gap",
        "demographic-parity difference (fairlearn): the largest minus the smallest rate of "
        "predicting the positive class (y = 1) across the attribute's values",
        "lower is better; 0 = parity",
    ),
    "eopp_gap": Definition(
        "eopp gap",
        "equal-opportunity difference (fairlearn): the largest minus the smallest true-positive "
        "rate across the attribute's values",
        "lower is better; 0 = parity",
    ),
    "eodds_gap": Definition(
        "eodds gap",
        "equalized-odds difference (fairlearn): the larger of the true-positive-rate and the "
        "false-positive-rate differences across the attribute's values",
        "lower is better; 0 = parity",
    ),
    "probe_accuracy": Definition(
        "probe accuracy (leakage)",
        "accuracy of a logistic-regression probe that predicts the target (an attribute, or y) "
        "from a frozen feature block (f: all features; f_y, f_<attr>: the blocks of a "
        "feature-split model); fit on val with each example weighted by 1 / its (attribute, y) "
        "cell's count, scored on every split",
        "for an attribute: lower is better, chance (1 / its number of values) = nothing linearly "
        "readable leaks",
    ),
    "degenerate": Definition(
        "degenerate",
        "the run was flagged: its model predicts one class, or sits at chance on val while its "
        "training loss is low",
        "a flagged model's numbers are shown but say little about the method",
    ),
    "selected_epoch": Definition(
        "selected epoch",
        "the epoch (counted from 0, as in log.jsonl) whose checkpoint was kept: the best val "
        "selection score (the config's select rule); inv, bal and test are never looked at for it",
        "",
    ),
}

#: Which way is better, for table headers (matched on the column name).
_ARROWS = [
    ("drop", "↓"),
    ("gap", "↓"),
    ("ece", "↓"),
    ("acc", "↑"),
    ("auroc", "↑"),
    ("group", "↑"),
]


def _arrow(column: str) -> str:
    col = column.lower()
    return next((a for key, a in _ARROWS if key in col), "")


def _definition_of(column: str) -> str:
    col = column.lower().replace(" ", "_")
    for key in ("drop", "worst_group", "balanced_accuracy", "auroc", "ece", "dp_gap", "eopp_gap"):
        if key in col:
            key = "worst_group_accuracy" if key == "worst_group" else key
            d = DEFINITIONS[key]
            return f"{d.label}: {d.meaning}; {d.better}"
    if "eodds_gap" in col:
        d = DEFINITIONS["eodds_gap"]
        return f"{d.label}: {d.meaning}; {d.better}"
    if "acc" in col:
        d = DEFINITIONS["accuracy"]
        return f"{d.label}: {d.meaning}; {d.better}"
    return ""


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def _fmt(mean: float, std: float, n: int) -> str:
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if n > 1 and np.isfinite(std):
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{100 * mean:.1f}"


def _pct(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def _with_ci(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{100 * mean:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * mean:.1f}"


def _methods(results: pd.DataFrame, order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(results["method"].astype(str)))
    if order is None:
        return present
    return [m for m in order if m in present] + [m for m in present if m not in order]


def headline_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Method x split: accuracy and worst-group accuracy (mean ± std over seeds, in %).
    Methods in ``order`` (the config's) when given, else as they appear."""
    y = results[results["target"] == "y"]
    splits = [s for s in EVAL_SPLITS if s in set(y["split"])]
    methods = _methods(y, order)
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
            f"{100 * (acc.loc[m, 'val'] - acc.loc[m, 'inv']):.1f}" if m in acc.index else "n/a"
            for m in methods
        ]
    seeds = results.groupby("method")["seed"].nunique()
    table["seeds"] = [int(seeds.get(m, 0)) for m in methods]
    return table


def _mean_of(results: pd.DataFrame, **match: str) -> float:
    part = results
    for key, value in match.items():
        part = part[part[key].astype(str) == str(value)]
    values = part["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def accuracy_ci_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Method x split: accuracy (%) [95% bootstrap interval]; several seeds: their means."""
    y = results[results["target"].astype(str) == "y"]
    splits = figures.eval_splits(y[y["metric"] == "accuracy"])
    methods = _methods(y, order)
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for split in splits:
        table[f"{split} acc"] = [
            _with_ci(
                _mean_of(y, method=m, split=split, metric="accuracy"),
                _mean_of(y, method=m, split=split, metric="accuracy_ci_low"),
                _mean_of(y, method=m, split=split, metric="accuracy_ci_high"),
            )
            for m in methods
        ]
    return table


def fairness_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """(method, attribute, split) x gap, in %; ``[low, high]`` where bootstrap intervals exist."""
    gaps = results[results["metric"].isin(figures.GAPS) & results["split"].isin(EVAL_SPLITS)]
    if gaps.empty:
        return pd.DataFrame()
    rows = {}
    splits = figures.eval_splits(gaps)
    for m in _methods(gaps, order):
        for attr in dict.fromkeys(gaps["target"].astype(str)):
            for split in splits:
                part = results[(results["method"] == m) & (results["split"] == split)]
                part = part[part["target"].astype(str) == attr]
                if part.empty or not part["metric"].isin(figures.GAPS).any():
                    continue
                rows[(m, attr, split)] = {
                    g: _with_ci(
                        _mean_of(part, metric=g),
                        _mean_of(part, metric=f"{g}_ci_low"),
                        _mean_of(part, metric=f"{g}_ci_high"),
                    )
                    for g in figures.GAPS
                }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "attribute", "split"])
    return table


def metric_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """(method, split) x AUROC, balanced accuracy, ECE for target y, in % (mean over seeds)."""
    keep = ["balanced_accuracy", "auroc", "ece"]
    part = results[(results["target"] == "y") & results["metric"].isin(keep)]
    part = part[part["split"].isin(EVAL_SPLITS)]
    if part.empty:
        return pd.DataFrame()
    rows = {}
    for m in _methods(part, order):
        for split in figures.eval_splits(part):
            cell = part[(part["method"] == m) & (part["split"] == split)]
            if not cell.empty:
                rows[(m, split)] = {k: _pct(_mean_of(cell, metric=k)) for k in keep}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "split"])
    return table


def probe_table(results: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """(method, target, block) x split: probe accuracy (%), with chance (1 / k)."""
    probes = results[results["metric"].astype(str).str.startswith("probe_accuracy[")]
    if probes.empty:
        return pd.DataFrame()
    card = figures.cardinalities(results)
    splits = figures.eval_splits(probes)
    rows = {}
    for m in _methods(probes, order):
        part = probes[probes["method"] == m]
        for target, metric in dict.fromkeys(
            zip(part["target"].astype(str), part["metric"].astype(str))
        ):
            cell = part[(part["target"].astype(str) == target) & (part["metric"] == metric)]
            block = metric[len("probe_accuracy[") : -1]
            row = {"chance": _pct(1 / max(card.get(target, 2), 2))}
            for s in splits:
                row["val (probe fit)" if s == "val" else s] = _pct(_mean_of(cell, split=s))
            rows[(m, target, block)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "target", "block"])
    return table


def group_table(
    results: pd.DataFrame,
    order: Sequence[str] | None = None,
    sizes: dict[tuple[str, str], float] | None = None,
) -> pd.DataFrame:
    """(method, group) x split: group accuracy (%) and, where known, the group's size n."""
    grp = results[
        (results["target"].astype(str) == "y")
        & results["metric"].astype(str).str.startswith("group_accuracy[")
    ]
    if grp.empty:
        return pd.DataFrame()
    sizes = sizes or {}
    splits = figures.eval_splits(grp)
    rows = {}
    for m in _methods(grp, order):
        for g in figures.group_names(grp):
            row = {}
            for s in splits:
                value = _mean_of(grp, method=m, split=s, metric=f"group_accuracy[{g}]")
                n = sizes.get((g, s))
                row[s] = _pct(value) + (f" (n={int(n)})" if n is not None else "")
            rows[(m, g)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "group"])
    return table


def degenerate_runs(results: pd.DataFrame) -> list[tuple[str, int]]:
    """(method, seed) of the runs flagged ``degenerate`` (value 1) in results.csv."""
    flags = results[results["metric"] == "degenerate"]
    flags = flags[pd.to_numeric(flags["value"], errors="coerce") >= 0.5]
    return sorted({(str(m), int(s)) for m, s in zip(flags["method"], flags["seed"])})


# ---------------------------------------------------------------------------------------------
# run folders: done.json, log.jsonl
# ---------------------------------------------------------------------------------------------


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(s):
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def _read_runs(layout: ExperimentLayout) -> list[dict[str, Any]]:
    runs = []
    for run in layout.runs():
        done = run.read_done()
        runs.append(
            {
                "method": run.method,
                "seed": run.seed,
                "log": run.read_log(),
                "done": done,
                "selected_epoch": (done or {}).get("selected_epoch"),
            }
        )
    return runs


def runs_table(
    runs: Sequence[dict[str, Any]],
    order: Sequence[str],
    degenerate: Sequence[tuple[str, int]],
    select: str | None,
) -> pd.DataFrame:
    """One row per run folder: selected epoch, its score, wall time, samples, where and when."""
    rank = {m: i for i, m in enumerate(order)}
    rows = {}
    flagged = set(degenerate)
    for r in sorted(runs, key=lambda r: (rank.get(r["method"], len(rank)), r["seed"])):
        done = r["done"] or {}
        compute = done.get("compute") or {}
        meta = done.get("meta") or {}
        sel = r["selected_epoch"]
        score = next(
            (e.get(select) for e in r["log"] if select and e.get("epoch") == sel),
            None,
        )
        warnings = list(done.get("warnings") or [])
        rows[(r["method"], r["seed"])] = {
            "selected epoch": "n/a" if sel is None else str(sel),
            "epochs logged": str(len(r["log"])),
            f"{select or 'val score'} at it": _pct(score) if score is not None else "n/a",
            "wall time": _duration(compute.get("seconds")),
            "train time": _duration(compute.get("train_seconds")),
            "samples": f"{int(compute['samples']):,}" if compute.get("samples") else "n/a",
            "device": str(meta.get("device", "n/a")),
            "torch": str(meta.get("torch", "n/a")),
            "shortcutlab": str(meta.get("version", "n/a")),
            "finished": _date(meta.get("finished")) if done else "not finished",
            "degenerate": "yes" if (r["method"], r["seed"]) in flagged else "no",
            "warnings": "; ".join(map(str, warnings)) or "none",
        }
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "seed"])
    return table


def _date(value: Any) -> str:
    if not value:
        return "n/a"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(value)


def _run_metadata(runs: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """Versions, devices, dates and wall time of the runs, from their done.json."""
    dones = [r["done"] for r in runs if r["done"]]
    out = []
    if not runs:
        return out
    out.append(("runs finished", f"{len(dones)} of {len(runs)} run folders"))

    def values(key: str) -> str:
        found = {
            str((d.get("meta") or {}).get(key)) for d in dones if (d.get("meta") or {}).get(key)
        }
        return ", ".join(sorted(found)) or "not recorded"

    out.append(("shortcutlab version (runs)", values("version")))
    out.append(("torch", values("torch")))
    out.append(("device", values("device")))
    dates = sorted(
        _date((d.get("meta") or {}).get("finished"))
        for d in dones
        if (d.get("meta") or {}).get("finished")
    )
    if dates:
        out.append(("finished", dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}"))
    else:
        out.append(("finished", "not recorded"))
    total = sum(float((d.get("compute") or {}).get("seconds") or 0) for d in dones)
    train = sum(float((d.get("compute") or {}).get("train_seconds") or 0) for d in dones)
    out.append(("wall time (sum over runs)", f"{_duration(total)} (training {_duration(train)})"))
    return out


# ---------------------------------------------------------------------------------------------
# split_counts.csv: the size of each group
# ---------------------------------------------------------------------------------------------


def group_index(counts: pd.DataFrame | None, results: pd.DataFrame) -> dict[str, str]:
    """``{group name in results.csv: row of split_counts.csv}``. A CSV dataset's results name
    attribute values (``site=A``) where split_counts.csv holds their codes (``site=0``); the
    codes are then the values' order in results.csv's group names (the order the grouper lists
    them in). {} when the two cannot be matched."""
    if counts is None or counts.empty:
        return {}
    names = figures.group_names(results)
    index = {str(i) for i in counts.index}
    if all(g in index for g in names):
        return {g: g for g in names}
    seen: dict[str, list[str]] = {}
    for g in names:
        for key, value in figures.parse_group(g).items():
            seen.setdefault(key, [])
            if value not in seen[key]:
                seen[key].append(value)
    coded = {
        g: ",".join(
            f"{k}={v}" if k == "y" else f"{k}={seen[k].index(v)}"
            for k, v in figures.parse_group(g).items()
        )
        for g in names
    }
    return coded if all(c in index for c in coded.values()) else {}


def group_sizes(counts: pd.DataFrame | None, results: pd.DataFrame) -> dict[tuple[str, str], float]:
    """``{(group, split): n}`` for the groups of results.csv, from split_counts.csv
    (``group_index`` matches the names); {} when they cannot be matched."""
    mapping = group_index(counts, results)
    if not mapping:
        return {}
    counts = counts.copy()
    counts.index = counts.index.astype(str)
    return {
        (g, str(split)): float(counts.loc[row, split])
        for g, row in mapping.items()
        for split in counts.columns
    }


# ---------------------------------------------------------------------------------------------
# HTML pieces
# ---------------------------------------------------------------------------------------------


def _swatch(method: str, colors: dict[str, str]) -> str:
    color = colors.get(method)
    sw = f'<span class="sw" style="background:{color}"></span>' if color else ""
    return sw + html.escape(method)


def html_table(
    table: pd.DataFrame,
    colors: dict[str, str],
    flags: dict[str, str] | None = None,
    tooltips: Callable[[str], str] = _definition_of,
) -> str:
    """A table whose ``method`` index level carries the method's colour (and a flag badge)."""
    if table is None or table.empty:
        return ""
    flags = flags or {}
    names = [n or "" for n in table.index.names]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    for col in table.columns:
        col = str(col)
        tip = tooltips(col)
        title = f' title="{html.escape(tip)}"' if tip else ""
        arrow = _arrow(col)
        arrow = f' <span class="dir">{arrow}</span>' if arrow else ""
        head += f"<th{title}>{html.escape(col)}{arrow}</th>"
    body = []
    for key, row in table.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        cells = []
        for name, value in zip(names, key):
            text = html.escape(str(value))
            if name == "method":
                text = _swatch(str(value), colors)
                if str(value) in flags:
                    text += f' <span class="flag">{html.escape(flags[str(value)])}</span>'
            cells.append(f'<th scope="row">{text}</th>')
        for col, value in row.items():
            cls = ' class="warn"' if str(col) == "degenerate" and str(value) == "yes" else ""
            cells.append(f"<td{cls}>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="tblwrap"><table class="tbl"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big") if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


@dataclass
class _Figure:
    name: str
    src: str
    files: list[tuple[str, str]]
    alt: str
    caption: str
    max_width: int


def _save(
    layout: ExperimentLayout, name: str, fig, alt: str, caption: str, embed_dpi: int = 150
) -> _Figure | None:
    if fig is None:
        return None
    pdf, png = layout.report_figure(name, "pdf"), layout.report_figure(name, "png")
    embedded = figures.save_figure(fig, pdf, png, embed_dpi=embed_dpi)
    rel = [("PDF", f"figures/{pdf.name}"), ("PNG, 300 dpi", f"figures/{png.name}")]
    # on screen at about 125 css px per inch of figure, never wider than the page
    width = int(_png_width(embedded) * 125 / embed_dpi) or 1200
    return _Figure(name, _b64(embedded), rel, alt, caption, width)


def _defn(key: str) -> str:
    d = DEFINITIONS[key]
    better = f" <em>{html.escape(d.better)}</em>." if d.better else ""
    return f"<b>{html.escape(d.label)}</b>: {html.escape(d.meaning)}.{better}"


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------


def detect_kind(layout: ExperimentLayout, results: pd.DataFrame) -> Literal["run", "audit"]:
    """``audit`` for a folder with gap confidence intervals and no run folders, else ``run``."""
    has_ci = results["metric"].astype(str).str.endswith("_gap_ci_low").any()
    return "audit" if has_ci and not any(True for _ in layout.runs()) else "run"


def build_report(run_dir: str | Path, kind: ReportKind = "auto") -> Path:
    """Rebuild ``report.html``, ``summary.md`` and ``figures/report_*`` of a finished folder.

    ``kind``: ``run`` (``shortcutlab run``), ``audit`` (``shortcutlab audit``: titled
    "shortcutlab audit: <model>", no training section) or ``auto`` (audit when the results hold
    gap confidence intervals and the folder has no run folders)."""
    layout = ExperimentLayout(Path(run_dir))
    if not layout.results.is_file():
        raise ShortcutlabError(f"{layout.root} has no results.csv; is it a finished run folder?")
    if kind not in ("auto", "run", "audit"):
        raise ShortcutlabError(f"report kind must be auto, run or audit, not {kind!r}")
    results = read_results(layout.results)
    results["method"] = results["method"].astype(str)
    config = yaml.safe_load(layout.config.read_text()) if layout.config.exists() else {}
    config = config if isinstance(config, dict) else {}
    if kind == "auto":
        kind = detect_kind(layout, results)

    order = figures.method_order(config, results["method"])
    colors = figures.method_colors(order)
    card = figures.cardinalities(results)
    chance = figures.chance_level(results)
    counts = None
    if layout.split_counts.exists():
        counts = pd.read_csv(layout.split_counts, index_col=0)
    sizes = group_sizes(counts, results)
    runs = _read_runs(layout) if kind == "run" else []
    select = config.get("select") or "val_worst_group"
    degenerate, flags, alerts = _flags_and_alerts(results, runs)

    dataset = (config.get("dataset") or {}).get("name", layout.root.name)
    model = order[0] if order else layout.root.name
    title = f"shortcutlab audit: {model}" if kind == "audit" else f"shortcutlab report: {dataset}"
    headline = headline_table(results, order)
    _write_summary(layout, title, config, headline, results, order, degenerate, kind)

    # figures: written to figures/report_<name>.pdf/.png and embedded
    figs, chance_txt = _report_figures(
        layout, results, order, colors, card, chance, sizes, runs, select, kind
    )

    extra_figs = [(p.stem.replace("_", " "), _b64(p.read_bytes())) for p in layout.figures()]
    meta = _metadata(layout, config, results, order, runs, kind)
    env = Environment(
        loader=PackageLoader("shortcutlab", "report/templates"), autoescape=select_autoescape()
    )
    page = env.get_template("report.html").render(
        title=title,
        kind=kind,
        meta=meta,
        alerts=alerts,
        legend=[(m, colors[m]) for m in order],
        config_yaml=yaml.safe_dump(config, sort_keys=False),
        headline=html_table(headline, colors, flags),
        accuracy_ci=html_table(accuracy_ci_table(results, order), colors, flags),
        fairness=html_table(fairness_table(results, order), colors, flags),
        metrics=html_table(metric_table(results, order), colors, flags),
        probes=html_table(probe_table(results, order), colors, flags),
        reliance=html_table(reliance_table(results, order), colors, flags),
        attribution=html_table(attribution_table(results, order), colors, flags),
        groups=html_table(group_table(results, order, sizes), colors, flags),
        runs=html_table(runs_table(runs, order, degenerate, select), colors, flags),
        split_counts=html_table(_named_counts(counts, results), colors)
        if counts is not None
        else "",
        figs={k: v for k, v in figs.items() if v is not None},
        extra_figs=extra_figs,
        samples=_b64(layout.samples.read_bytes()) if layout.samples.exists() else None,
        definitions=[DEFINITIONS[k] for k in DEFINITIONS],
        select=select,
        chance_txt=chance_txt,
    )
    write_text_atomic(page, layout.report)
    return layout.report


def _flags_and_alerts(
    results: pd.DataFrame, runs: list[dict]
) -> tuple[list[tuple[str, int]], dict[str, str], list[str]]:
    """The degenerate (method, seed) runs, a badge per flagged method, and the page's alerts
    (degenerate runs and every warning of the runs' ``done.json``)."""
    degenerate = degenerate_runs(results)
    flags: dict[str, str] = {}
    for m in dict.fromkeys(m for m, _ in degenerate):
        seeds = [str(s) for m2, s in degenerate if m2 == m]
        flags[m] = "degenerate (seed " + ", ".join(seeds) + ")"
    alerts = [
        f"{m} seed {s} is flagged degenerate: {DEFINITIONS['degenerate'].meaning}. "
        f"{DEFINITIONS['degenerate'].better.capitalize()}."
        for m, s in degenerate
    ]
    for r in runs:
        for w in (r["done"] or {}).get("warnings") or []:
            alerts.append(f"{r['method']} seed {r['seed']}: {w}")

    return degenerate, flags, alerts


def _report_figures(
    layout: ExperimentLayout,
    results: pd.DataFrame,
    order: list[str],
    colors: dict[str, str],
    card: dict[str, int],
    chance: float,
    sizes: dict[tuple[str, str], float],
    runs: list[dict],
    select: str,
    kind: str,
) -> tuple[dict[str, _Figure | None], str]:
    """Every report figure, written as ``figures/report_<name>.pdf`` and a 300-dpi PNG, with its
    caption; and the chance-level text the captions share."""
    n_cls = card.get("y", 2)
    chance_txt = f"chance = 1/{n_cls} = {100 * chance:.0f}%"
    seeds_note = (
        " With several seeds: bars are means, error bars the means of the seeds' interval "
        "bounds, dots the single seeds."
        if results.groupby("method")["seed"].nunique().max() > 1
        else ""
    )
    figs: dict[str, _Figure | None] = {}
    figs["shift"] = _save(
        layout,
        "accuracy_by_split",
        figures.shift_figure(results, order, colors, chance),
        "accuracy and worst-group accuracy per split and method",
        f"Left: {_defn('accuracy')} Error bars: the 95% bootstrap interval. Right: "
        f"{_defn('worst_group_accuracy')} Dashed line: {chance_txt}. Bars start at 0; a bar at 0 "
        f"shows as a line on the axis.{seeds_note}",
    )
    figs["groups"] = _save(
        layout,
        "group_accuracy",
        figures.group_figure(results, order, colors, chance, sizes),
        "accuracy per joint group and split",
        f"{_defn('group_accuracy')} Dashed line: {chance_txt}. "
        + (
            "Group sizes n from split_counts.csv."
            if sizes
            else "Group sizes unknown (no matching split_counts.csv): no intervals."
        ),
    )
    figs["gaps"] = _save(
        layout,
        "fairness_gaps",
        figures.gap_figure(results, order, colors),
        "fairness gaps per attribute and split",
        f"{_defn('dp_gap')} {_defn('eopp_gap')} {_defn('eodds_gap')} Bars start at 0 (parity, "
        "what a predictor that ignores the attribute reaches in expectation). "
        + (
            "Error bars: 95% percentile bootstrap interval over the split's images."
            if results["metric"].astype(str).str.endswith("_gap_ci_low").any()
            else "No bootstrap intervals for the gaps in this folder (<code>shortcutlab audit</code> "
            "computes them)."
        ),
    )
    chance_by_target = {t: 1 / max(k, 2) for t, k in card.items()}
    figs["probes"] = _save(
        layout,
        "probe_leakage",
        figures.probe_figure(results, order, colors, chance_by_target),
        "linear-probe accuracy per target, feature block and split",
        f"{_defn('probe_accuracy')} The probe is fit on val, so val is its training score. Dashed "
        "line: chance, 1/k for a target with k values.",
    )
    figs["reliance"] = _save(
        layout,
        "shortcut_reliance",
        reliance_figure(results, order, colors),
        "counterfactual flip rate per changed factor, split and method",
        "The share of images whose predicted class changes when only that factor of the image "
        "changes (the phantom's exact counterfactual; 0 = the model ignores the factor). Error "
        "bars: 95% bootstrap interval over the split's images.",
    )
    figs["mi"] = _save(
        layout,
        "mi_accounting",
        figures.mi_figure(results, order, colors),
        "MI of f_y with the confounder blocks: fresh critic and training critic",
        "Solid: a fresh critic trained on the frozen train features after training, scored on val "
        "(<code>mi_fresh_critic</code>); hatched: the training critic on the same val features "
        "(<code>mi_training_critic</code>). Log scale, nats (docs/methods.md, Honest MI "
        "accounting).",
    )
    if kind == "run":
        figs["curves"] = _save(
            layout,
            "training_curves",
            figures.curves_figure(runs, select, order, colors, chance),
            "training loss and val selection score per epoch",
            "Left: the mean training loss per epoch (each method's own objective: compare shapes, "
            "not levels, across methods). Right: the val selection score "
            f"<code>{html.escape(select)}</code> (the rule checkpoints are chosen by; {chance_txt},"
            f" dashed). Star: {_defn('selected_epoch')}",
        )

    return figs, chance_txt


def _named_counts(counts: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """split_counts.csv with its groups named as in results.csv (``site=A`` for ``site=0``)."""
    mapping = group_index(counts, results)
    rename = {row: g for g, row in mapping.items() if row != g}
    if not rename:
        return counts
    named = counts.copy()
    named.index = [rename.get(str(i), str(i)) for i in named.index]
    named.index.name = counts.index.name
    return named


def _metadata(
    layout: ExperimentLayout,
    config: dict[str, Any],
    results: pd.DataFrame,
    order: Sequence[str],
    runs: Sequence[dict[str, Any]],
    kind: str,
) -> list[tuple[str, str]]:
    data = config.get("dataset") or {}
    train = config.get("train") or {}
    meta = [("dataset", str(data.get("name", "n/a")))]
    if data.get("attributes"):
        meta.append(("attributes", ", ".join(map(str, data["attributes"]))))
    meta.append(
        ("audited model" if kind == "audit" else "methods (config order)", ", ".join(order))
    )
    meta.append(("seeds", ", ".join(str(s) for s in sorted(set(results["seed"].tolist())))))
    if kind == "run":
        meta.append(("model selection", f"{config.get('select', 'n/a')} on val"))
        meta.append(
            (
                "training",
                f"{train.get('backbone', 'n/a')}, {train.get('epochs', 'n/a')} epochs, "
                f"batch {train.get('batch_size', 'n/a')}, device setting "
                f"{train.get('device', 'n/a')}",
            )
        )
    meta.append(("bootstrap resamples", str(config.get("bootstrap", "n/a"))))
    meta += _run_metadata(runs)
    written = datetime.fromtimestamp(layout.results.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    meta.append(("results.csv written", written))
    meta.append(
        ("report built", f"{datetime.now().strftime('%Y-%m-%d %H:%M')}, shortcutlab {__version__}")
    )
    return meta


def _write_summary(
    layout: ExperimentLayout,
    title: str,
    config: dict[str, Any],
    headline: pd.DataFrame,
    results: pd.DataFrame,
    order: Sequence[str],
    degenerate: Sequence[tuple[str, int]],
    kind: str,
) -> None:
    text = (
        f"# {title}\n\n"
        "Accuracy and worst-group accuracy (%) on val (with the shortcut), inv (against it) and bal "
        "(without it); mean ± std over seeds."
    )
    if kind == "run":
        text += f" Models were selected on val only (`{config.get('select', '?')}`)."
    text += "\n\n" + headline.to_markdown() + "\n"
    if kind == "audit":
        gaps = fairness_table(results, order)
        if not gaps.empty:
            text += (
                "\nFairness gaps (%, [95% bootstrap interval]; 0 = parity, lower is better):\n\n"
                + gaps.reset_index().to_markdown(index=False)
                + "\n"
            )
    if degenerate:
        text += "\nFlagged degenerate (predicts one class, or at chance on val with a low "
        text += "training loss): " + ", ".join(f"{m} seed {s}" for m, s in degenerate) + ".\n"
    text += "\nFigures: `figures/report_*.pdf` (vector) and `figures/report_*.png` (300 dpi).\n"
    write_text_atomic(text, layout.summary)
