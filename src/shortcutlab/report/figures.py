"""Figures for the report, drawn with matplotlib (Agg).

The report's figures are built as matplotlib ``Figure`` objects (tests inspect them) and written
by ``save_figure`` as a vector PDF and a 300-dpi PNG. Every figure draws the methods in one order
(the config's) and one colour each (``method_colors``), bars from 0 with the chance level as a
dashed line, confidence intervals as error bars, and its legend outside the axes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import io  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from shortcutlab.data.table import ImageTable  # noqa: E402
from shortcutlab.plotting import png_bytes  # noqa: E402


def save_sample_grid(table: ImageTable, path: Path, per_group: int = 8, seed: int = 0) -> None:
    """Rows = joint (y, z) groups of the train split (or all rows), columns = examples."""
    part = table.split("train") if "train" in table.splits else table
    gid = part.group_ids()
    names = part.grouper.names()
    rng = np.random.default_rng(seed)
    groups = [g for g in range(len(names)) if (gid == g).any()][:8]
    with_mask = part.masks is not None
    cols = per_group + (1 if with_mask else 0)
    fig, axes = plt.subplots(
        len(groups), cols, figsize=(1.1 * cols, 1.15 * len(groups)), squeeze=False
    )
    for r, g in enumerate(groups):
        rows = rng.choice(
            np.flatnonzero(gid == g), size=min(per_group, int((gid == g).sum())), replace=False
        )
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(rows):
                img = part.images[rows[c]]
                ax.imshow(
                    img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
                    cmap="gray",
                    vmin=0,
                    vmax=255,
                )
            elif with_mask and c == cols - 1 and len(rows):
                ax.imshow(part.masks[rows[0]], cmap="viridis")
                if r == 0:
                    ax.set_title("ROI", fontsize=7)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(names[g], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{table.name}: train examples by group", fontsize=9)
    path.write_bytes(png_bytes(fig))


# ---------------------------------------------------------------------------------------------
# one order and one colour per method; saving
# ---------------------------------------------------------------------------------------------

#: Okabe-Ito (colour-blind safe; its yellow left out, too pale on white), a brown and a grey,
#: then Paul Tol's muted colours that differ from those; tab20 beyond 14 methods.
PALETTE = [
    to_hex(c)
    for c in [
        "#0072B2",
        "#E69F00",
        "#009E73",
        "#D55E00",
        "#CC79A7",
        "#56B4E9",
        "#8C6D31",
        "#555555",
        "#332288",
        "#882255",
        "#44AA99",
        "#999933",
        "#661100",
        "#AA4466",
    ]
    + list(plt.get_cmap("tab20").colors)
]

#: Evaluation splits in the order the report shows them (train is left out of the plots).
EVAL_SPLITS = ["val", "inv", "bal", "test", "target", "external"]

SEED_STYLES = ["-", "--", ":", "-."]

#: Font sizes and embedded TrueType fonts (text stays text in the PDF).
STYLE = {
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}


def config_methods(config: dict[str, Any] | None) -> list[str]:
    """Method names in config order; entries are names or dicts with ``name`` (or ``method``)."""
    names = []
    for entry in (config or {}).get("methods") or []:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict) and (entry.get("name") or entry.get("method")):
            names.append(str(entry.get("name") or entry.get("method")))
    return list(dict.fromkeys(names))


def method_order(config: dict[str, Any] | None, present: Iterable[str]) -> list[str]:
    """The methods in ``present``, in config order; ones the config lacks (``erm+swift``) follow
    in the order they appear."""
    present = list(dict.fromkeys(str(m) for m in present))
    known = [m for m in config_methods(config) if m in present]
    return known + [m for m in present if m not in known]


def method_colors(order: Sequence[str]) -> dict[str, str]:
    """One colour per method, by position in ``order`` (the same in every figure and table)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(order)}


def _darker(color: str, f: float = 0.6) -> str:
    return to_hex(tuple(f * c for c in to_rgb(color)))


def _figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, vector: Path, png: Path, embed_dpi: int = 150) -> bytes:
    """Write ``fig`` as ``vector`` (.pdf or .svg) and as a 300-dpi ``png``; return a PNG at
    ``embed_dpi`` (the 300-dpi one, scaled down) for the HTML page. The figure is closed.

    The constrained layout already fits every label and the legend inside the figure, so it is
    saved as laid out (no tight bounding box: one draw per file)."""
    from PIL import Image

    try:
        with plt.rc_context(STYLE):
            fig.savefig(vector)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=300)
    finally:
        plt.close(fig)
    png.write_bytes(buf.getvalue())
    image = Image.open(io.BytesIO(buf.getvalue()))
    factor = 300 / embed_dpi
    if factor == int(factor):  # a box filter over whole pixels: fast, and sharp enough on screen
        image = image.reduce(int(factor))
    else:
        size = (round(image.width / factor), round(image.height / factor))
        image = image.resize(size, Image.Resampling.LANCZOS)
    small = io.BytesIO()
    image.save(small, format="png", dpi=(embed_dpi, embed_dpi))
    return small.getvalue()


# ---------------------------------------------------------------------------------------------
# reading the results table
# ---------------------------------------------------------------------------------------------


def parse_group(name: str) -> dict[str, str]:
    """``y=1,site=A`` -> {"y": "1", "site": "A"}."""
    out = {}
    for part in name.split(","):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def group_names(results: pd.DataFrame) -> list[str]:
    """The joint groups of ``group_accuracy[...]`` rows, in the order they first appear."""
    metrics = results.loc[results["metric"].astype(str).str.startswith("group_accuracy["), "metric"]
    return list(dict.fromkeys(m[len("group_accuracy[") : -1] for m in metrics))


def cardinalities(results: pd.DataFrame) -> dict[str, int]:
    """Number of values of ``y`` and of each attribute seen in the group names."""
    values: dict[str, set[str]] = {}
    for name in group_names(results):
        for key, value in parse_group(name).items():
            values.setdefault(key, set()).add(value)
    return {k: len(v) for k, v in values.items()}


def chance_level(results: pd.DataFrame, target: str = "y") -> float:
    """1 / (number of values of ``target``), 2 values where the group names do not say."""
    return 1.0 / max(cardinalities(results).get(target, 2), 2)


def eval_splits(results: pd.DataFrame) -> list[str]:
    """The evaluation splits present (not train), in report order, then any others."""
    present = list(dict.fromkeys(results["split"].astype(str)))
    known = [s for s in EVAL_SPLITS if s in present]
    return known + [s for s in present if s not in known and s != "train"]


def _pick(results: pd.DataFrame, metric: str, target: str = "y") -> pd.DataFrame:
    return results[(results["metric"] == metric) & (results["target"].astype(str) == target)]


def _cell(part: pd.DataFrame, method: str, split: str) -> np.ndarray:
    rows = part[(part["method"] == method) & (part["split"] == split)]
    return rows["value"].to_numpy(dtype=float)


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def wilson_interval(p: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy ``p`` measured on ``n`` images."""
    if not (np.isfinite(p) and n and n > 0):
        return float("nan"), float("nan")
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


# ---------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------


def _grouped_bars(
    ax,
    categories: Sequence[str],
    methods: Sequence[str],
    colors: dict[str, str],
    values: dict[str, Sequence[float]],
    intervals: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    seeds: dict[str, Sequence[np.ndarray]] | None = None,
    labels: bool = True,
    scale: float = 100.0,
) -> float:
    """One bar per (category, method), methods side by side in ``methods`` order. A bar's top
    is drawn as a thick line, so a bar at 0 shows as a line on the axis; a missing value is
    written ``n/a``. Returns the highest point drawn (bar, interval or seed dot), scaled."""
    x = np.arange(len(categories), dtype=float)
    n = max(len(methods), 1)
    width = 0.8 / n
    top = 0.0
    for i, m in enumerate(methods):
        xs = x - 0.4 + width * (i + 0.5)
        v = np.asarray(values[m], dtype=float) * scale
        ok = np.isfinite(v)
        face, edge = colors[m], _darker(colors[m])
        ax.bar(xs[ok], v[ok], width * 0.9, color=face, edgecolor=edge, linewidth=0.5, zorder=2)
        # the bar's top as a line, drawn over the axis so that a bar at 0 still shows
        top_lines = ax.hlines(
            v[ok], xs[ok] - width * 0.45, xs[ok] + width * 0.45, colors=edge, lw=1.8, zorder=3
        )
        top_lines.set_clip_on(False)
        tops = np.where(ok, v, 0.0)
        if intervals is not None and m in intervals:
            lo = np.asarray(intervals[m][0], dtype=float) * scale
            hi = np.asarray(intervals[m][1], dtype=float) * scale
            has = ok & np.isfinite(lo) & np.isfinite(hi)
            if has.any():
                err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])[:, has]
                ax.errorbar(
                    xs[has], v[has], yerr=err, fmt="none", ecolor="0.1", elinewidth=0.8,
                    capsize=2.0, capthick=0.8, zorder=4,
                )  # fmt: skip
                tops = np.where(has, np.maximum(tops, hi), tops)
        if seeds is not None and m in seeds:
            for j, runs in enumerate(seeds[m]):
                runs = np.asarray(runs, dtype=float) * scale
                runs = runs[np.isfinite(runs)]
                if len(runs) > 1:
                    ax.scatter(
                        np.full(len(runs), xs[j]), runs, s=6, color="0.1", zorder=5, linewidths=0
                    )
                    tops[j] = max(tops[j], runs.max())
        for j in np.flatnonzero(~ok):
            ax.text(xs[j], 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
        if labels:
            for j in np.flatnonzero(ok):
                ax.annotate(
                    f"{v[j]:.1f}", (xs[j], tops[j]), xytext=(0, 2), textcoords="offset points",
                    rotation=90 if n > 1 else 0, ha="center", va="bottom", fontsize=6,
                    color="0.2",
                )  # fmt: skip
        top = max(top, float(np.nanmax(tops)) if len(tops) else 0.0)
    ax.set_xticks(x)
    ax.set_xticklabels(categories)
    ax.set_xlim(-0.55, len(categories) - 0.45)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.set_axisbelow(True)
    return top


def _chance_line(ax, level: float, scale: float = 100.0) -> None:
    line = ax.axhline(level * scale, color="0.3", ls="--", lw=1.0, zorder=6)
    line.set_gid("chance")


def _percent_axis(ax, top: float, labels: bool) -> None:
    """0 to 100% (ticks), with room above for the value labels."""
    ax.set_ylim(0, max(100.0, top) + (14 if labels else 3))
    ax.set_yticks(np.arange(0, 101, 20))


def _legend(
    fig: Figure, methods: Sequence[str], colors: dict[str, str], extra=(), lines: bool = False
) -> None:
    """The legend above the panels, outside every axis (never over the data)."""
    if lines:
        handles = [Line2D([], [], color=colors[m], lw=1.8, label=m) for m in methods]
    else:
        handles = [
            Patch(facecolor=colors[m], edgecolor=_darker(colors[m]), label=m) for m in methods
        ]
    handles += list(extra)
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncols=min(len(handles), 6),
        frameon=False,
        handlelength=1.6,
    )


def _chance_handle(level: float, what: str = "chance") -> Line2D:
    return Line2D([], [], color="0.3", ls="--", lw=1.0, label=f"{what} ({100 * level:.0f}%)")


def _value_labels(n_bars: int) -> bool:
    return n_bars <= 36


def shift_figure(
    results: pd.DataFrame, order: Sequence[str], colors: dict[str, str], chance: float
) -> Figure | None:
    """Accuracy (with its 95% bootstrap interval) and worst-group accuracy on every evaluation
    split, one bar per method. Several seeds: the mean, the mean of the seeds' interval bounds,
    and each seed as a dot."""
    splits = eval_splits(_pick(results, "accuracy"))
    if not splits:
        return None
    panels = [("accuracy", "accuracy (%)")]
    if not _pick(results, "worst_group_accuracy").empty:
        panels.append(("worst_group_accuracy", "worst-group accuracy (%)"))
    methods = [m for m in order if m in set(results["method"])]
    width = max(3.2, len(splits) * (0.22 * len(methods) + 0.5))
    fig = _figure(min(len(panels) * width, 13.0), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    labels = _value_labels(len(splits) * len(methods))
    lows, highs = _pick(results, "accuracy_ci_low"), _pick(results, "accuracy_ci_high")
    for ax, (metric, title) in zip(axes, panels):
        part = _pick(results, metric)
        values = {m: [_mean(_cell(part, m, s)) for s in splits] for m in methods}
        seeds = {m: [_cell(part, m, s) for s in splits] for m in methods}
        intervals = None
        if metric == "accuracy" and not lows.empty:
            intervals = {
                m: (
                    [_mean(_cell(lows, m, s)) for s in splits],
                    [_mean(_cell(highs, m, s)) for s in splits],
                )
                for m in methods
            }
        top = _grouped_bars(ax, splits, methods, colors, values, intervals, seeds, labels)
        _chance_line(ax, chance)
        _percent_axis(ax, top, labels)
        ax.set_title(title)
    axes[0].set_ylabel("%")
    _legend(fig, methods, colors, [_chance_handle(chance)])
    return fig


def _group_label(name: str, n: float | None) -> str:
    text = "\n".join(name.split(","))
    if n is not None and np.isfinite(n):
        text += f"\nn={int(n)}"
    return text


def group_figure(
    results: pd.DataFrame,
    order: Sequence[str],
    colors: dict[str, str],
    chance: float,
    sizes: dict[tuple[str, str], float] | None = None,
) -> Figure | None:
    """Accuracy per joint group (y, attributes) on each evaluation split, with the group's size
    ``n`` under its name and, where ``n`` is known, a 95% Wilson interval from it."""
    grp = results[
        (results["target"].astype(str) == "y")
        & results["metric"].astype(str).str.startswith("group_accuracy[")
    ]
    splits = eval_splits(grp)
    if not splits:
        return None
    sizes = sizes or {}
    methods = [m for m in order if m in set(grp["method"])]
    groups = group_names(grp)
    panel_w = max(3.0, len(groups) * (0.2 * len(methods) + 0.45))
    per_row = max(1, min(len(splits), int(13.0 // panel_w)))
    rows = -(-len(splits) // per_row)
    fig = _figure(min(13.0, per_row * panel_w + 0.6), 3.3 * rows + 0.3)
    axes = fig.subplots(rows, per_row, squeeze=False, sharey=True).ravel()
    labels = _value_labels(len(groups) * len(methods))
    for ax, split in zip(axes, splits):
        values, intervals = {}, {}
        for m in methods:
            vals = [_mean(_cell(_pick(grp, f"group_accuracy[{g}]"), m, split)) for g in groups]
            values[m] = vals
            bounds = [wilson_interval(v, sizes.get((g, split))) for v, g in zip(vals, groups)]
            intervals[m] = ([b[0] for b in bounds], [b[1] for b in bounds])
        seeds = {
            m: [_cell(_pick(grp, f"group_accuracy[{g}]"), m, split) for g in groups]
            for m in methods
        }
        top = _grouped_bars(
            ax, [""] * len(groups), methods, colors, values, intervals, seeds, labels
        )
        ax.set_xticklabels([_group_label(g, sizes.get((g, split))) for g in groups], fontsize=6.5)
        _chance_line(ax, chance)
        _percent_axis(ax, top, labels)
        ax.set_title(split)
    for ax in axes[len(splits) :]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r * per_row].set_ylabel("group accuracy (%)")
    extra = [_chance_handle(chance)]
    if sizes:
        extra.append(Line2D([], [], color="0.1", lw=0.8, marker="|", label="95% Wilson interval"))
    _legend(fig, methods, colors, extra)
    return fig


GAPS = ["dp_gap", "eopp_gap", "eodds_gap"]


def gap_figure(
    results: pd.DataFrame, order: Sequence[str], colors: dict[str, str]
) -> Figure | None:
    """Fairness gaps (%) per attribute on each evaluation split; 0 is parity, lower is better.
    Error bars: the bootstrap interval where ``<gap>_ci_low/_ci_high`` rows exist (audit)."""
    gaps = results[results["metric"].isin(GAPS) & (results["target"].astype(str) != "y")]
    splits = eval_splits(gaps)
    if not splits:
        return None
    attrs = list(dict.fromkeys(gaps["target"].astype(str)))
    cats = [(a, g) for a in attrs for g in GAPS]
    names = [f"{g.removesuffix('_gap')}\n{a}" if len(attrs) > 1 else g for a, g in cats]
    methods = [m for m in order if m in set(gaps["method"])]
    panel_w = max(3.0, len(cats) * (0.2 * len(methods) + 0.45))
    per_row = max(1, min(len(splits), int(13.0 // panel_w)))
    rows = -(-len(splits) // per_row)
    fig = _figure(min(13.0, per_row * panel_w + 0.6), 3.0 * rows + 0.3)
    axes = fig.subplots(rows, per_row, squeeze=False, sharey=True).ravel()
    labels = _value_labels(len(cats) * len(methods))
    top = 0.0
    has_ci = False
    for ax, split in zip(axes, splits):
        values, intervals, seeds = {}, {}, {}
        for m in methods:
            values[m] = [_mean(_cell(_pick(results, g, a), m, split)) for a, g in cats]
            seeds[m] = [_cell(_pick(results, g, a), m, split) for a, g in cats]
            lo = [_mean(_cell(_pick(results, f"{g}_ci_low", a), m, split)) for a, g in cats]
            hi = [_mean(_cell(_pick(results, f"{g}_ci_high", a), m, split)) for a, g in cats]
            has_ci = has_ci or bool(np.isfinite(lo).any())
            intervals[m] = (lo, hi)
        top = max(top, _grouped_bars(ax, names, methods, colors, values, intervals, seeds, labels))
        ax.set_title(split)
    ymax = min(100.0, max(10.0, top * 1.25))
    for ax in axes[: len(splits)]:
        ax.set_ylim(0, ymax + (0.12 * ymax if labels else 0))
    for ax in axes[len(splits) :]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r * per_row].set_ylabel("gap (%), 0 = parity")
    extra = []
    if has_ci:
        extra.append(Line2D([], [], color="0.1", lw=0.8, marker="|", label="95% bootstrap CI"))
    _legend(fig, methods, colors, extra)
    return fig


def probe_figure(
    results: pd.DataFrame,
    order: Sequence[str],
    colors: dict[str, str],
    chance: dict[str, float],
) -> Figure | None:
    """Linear-probe accuracy of each attribute (and y) from each feature block, per split; the
    probe is fit on val, so val is its training score. Chance = 1/k for a k-valued target."""
    probes = results[results["metric"].astype(str).str.startswith("probe_accuracy[")]
    if probes.empty:
        return None
    panels = list(dict.fromkeys(zip(probes["target"].astype(str), probes["metric"].astype(str))))
    splits = eval_splits(probes)
    methods = [m for m in order if m in set(probes["method"])]
    cats = [f"{s} (fit)" if s == "val" else s for s in splits]
    panel_w = max(2.8, len(splits) * (0.2 * len(methods) + 0.45))
    per_row = max(1, min(len(panels), int(13.0 // panel_w)))
    rows = -(-len(panels) // per_row)
    fig = _figure(min(13.0, per_row * panel_w + 0.6), 3.0 * rows + 0.3)
    axes = fig.subplots(rows, per_row, squeeze=False, sharey=True).ravel()
    labels = _value_labels(len(splits) * len(methods))
    for ax, (target, metric) in zip(axes, panels):
        part = _pick(probes, metric, target)
        values = {m: [_mean(_cell(part, m, s)) for s in splits] for m in methods}
        seeds = {m: [_cell(part, m, s) for s in splits] for m in methods}
        top = _grouped_bars(ax, cats, methods, colors, values, None, seeds, labels)
        _chance_line(ax, chance.get(target, 0.5))
        _percent_axis(ax, top, labels)
        block = metric[len("probe_accuracy[") : -1]
        ax.set_title(f"{target} from {block} (chance {100 * chance.get(target, 0.5):.0f}%)")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for r in range(rows):
        axes[r * per_row].set_ylabel("probe accuracy (%)")
    extra = [Line2D([], [], color="0.3", ls="--", lw=1.0, label="chance (1/k)")]
    _legend(fig, methods, colors, extra)
    return fig


def curves_figure(
    runs: Sequence[dict[str, Any]],
    key: str,
    order: Sequence[str],
    colors: dict[str, str],
    chance: float,
) -> Figure | None:
    """Per epoch (numbered from 0, as in ``log.jsonl``): the mean training loss and the val
    selection score ``key``; the selected epoch is a star. One colour per method, one line
    style per seed. ``runs``: dicts with ``method``, ``seed``, ``log`` (list of dicts) and
    ``selected_epoch`` (or None)."""
    runs = [r for r in runs if r.get("log")]
    if not runs:
        return None
    panels = []
    if any("loss" in e for r in runs for e in r["log"]):
        panels.append(("loss", "training loss (mean per epoch)", 1.0))
    if any(key in e for r in runs for e in r["log"]):
        panels.append((key, f"val selection score: {key} (%)", 100.0))
    if not panels:
        return None
    methods = [m for m in order if any(r["method"] == m for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    fig = _figure(min(13.0, 4.6 * len(panels)), 3.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (k, title, scale) in zip(axes, panels):
        for r in runs:
            if r["method"] not in colors:
                continue
            pts = [(e.get("epoch", i), e.get(k)) for i, e in enumerate(r["log"])]
            xs = np.array([p[0] for p in pts], dtype=float)
            ys = np.array([np.nan if p[1] is None else p[1] for p in pts], dtype=float) * scale
            style = SEED_STYLES[seeds.index(r["seed"]) % len(SEED_STYLES)]
            ax.plot(
                xs, ys, style, color=colors[r["method"]], lw=1.4, marker=".", ms=3, clip_on=False,
                zorder=3,
            )  # fmt: skip
            sel = r.get("selected_epoch")
            if sel is not None and np.isin(sel, xs).any():
                j = int(np.flatnonzero(xs == sel)[0])
                ax.plot(
                    xs[j], ys[j], marker="*", ms=10, color=colors[r["method"]],
                    markeredgecolor="0.1", markeredgewidth=0.6, zorder=5, ls="none",
                )  # fmt: skip
        ax.set_xlabel("epoch (from 0, as in log.jsonl)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if scale == 100.0:
            _chance_line(ax, chance)
            ax.set_ylim(0, 103)
        else:
            ax.set_ylim(bottom=0)
    extra = [
        Line2D([], [], ls="none", marker="*", ms=9, color="0.6", markeredgecolor="0.1",
               label="selected epoch"),
    ]  # fmt: skip
    if any(k == key for k, _, _ in panels):
        extra.append(_chance_handle(chance))
    if len(seeds) > 1:
        extra += [
            Line2D([], [], color="0.3", ls=SEED_STYLES[i % len(SEED_STYLES)], label=f"seed {s}")
            for i, s in enumerate(seeds)
        ]
    _legend(fig, methods, colors, extra, lines=True)
    return fig


def tsne_plot(
    features: np.ndarray,
    labels: dict[str, np.ndarray],
    title: str = "",
    max_points: int = 1000,
    seed: int = 0,
) -> bytes:
    """t-SNE (scikit-learn) of one feature block, one panel per colouring (``y``, each attribute).

    For ``f_y`` of a disentangled model, panels coloured by an attribute show no structure.
    A block that is constant (a penalty can empty it) or not finite has nothing to embed: the
    panels say so instead (scikit-learn's Barnes-Hut tree crashes the process on such input).
    """
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    n = len(features)
    keep = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
    x = features[keep].astype(np.float64)
    finite = bool(np.isfinite(x).all())
    spread = float(x.std()) if finite else 0.0
    xy = None
    if spread > 1e-12 and len(np.unique(x, axis=0)) >= 3:
        x = (x - x.mean(0)) / spread  # one scale for every block: t-SNE's init sees unit spread
        emb = TSNE(
            2, init="pca", perplexity=min(30.0, max(5.0, (len(keep) - 1) / 4)), random_state=seed
        )
        xy = emb.fit_transform(x.astype(np.float32))
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], labels.items(), strict=True):
        if xy is None:
            what = "constant" if finite else "not finite"
            ax.text(0.5, 0.5, f"the block is {what}:\nnothing to embed", ha="center", va="center")
        else:
            ax.scatter(xy[:, 0], xy[:, 1], c=values[keep], cmap="coolwarm", s=4, alpha=0.7)
        ax.set_title(f"coloured by {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10, y=1.05)
    return png_bytes(fig)


def mi_figure(results: pd.DataFrame, order: Sequence[str], colors: dict[str, str]) -> Figure | None:
    """Honest MI accounting (docs/methods.md): per split method and confounder target, the
    fresh critic's DV estimate on val (``mi_fresh_critic``, solid) beside the training critic's
    own value on the same features (``mi_training_critic``, hatched); log-scaled nats."""
    metrics = ["mi_fresh_critic", "mi_training_critic"]
    part = results[results["metric"].isin(metrics)]
    if part.empty:
        return None
    methods = [m for m in order if m in set(part["method"])]
    targets = list(dict.fromkeys(part["target"].astype(str)))
    fig = _figure(max(4.0, 1.2 + 1.1 * len(methods) * len(targets)), 3.2)
    ax = fig.subplots()
    x, ticks, labels = 0.0, [], []
    for t in targets:
        for m in methods:
            for j, metric in enumerate(metrics):
                vals = part[
                    (part["method"] == m) & (part["target"] == t) & (part["metric"] == metric)
                ]["value"]
                if len(vals):
                    ax.bar(
                        x + 0.4 * j,
                        max(float(vals.mean()), 1e-3),
                        0.38,
                        color=colors.get(m, "0.5"),
                        hatch="//" if j else None,
                        edgecolor=_darker(colors.get(m, "0.5")),
                    )
            ticks.append(x + 0.2)
            labels.append(f"{m}\n{t}")
            x += 1.0
        x += 0.4
    ax.set_yscale("log")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("MI estimate on val (nats)")
    extra = [
        Patch(facecolor="0.8", edgecolor="0.3", label="fresh critic"),
        Patch(facecolor="0.8", edgecolor="0.3", hatch="//", label="training critic"),
    ]
    _legend(fig, methods, colors, extra)
    return fig
