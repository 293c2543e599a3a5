"""Figures for the report, drawn with matplotlib (Agg) and returned as PNG bytes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shortcutlab.data.table import ImageTable  # noqa: E402
from shortcutlab.plotting import generated_grid, png_bytes  # noqa: E402, F401

_png = png_bytes

SPLIT_ORDER = ["train", "val", "inv", "bal", "test"]


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
    path.write_bytes(_png(fig))


def _mean_std(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.groupby(keys)["value"].agg(["mean", "std", "count"]).reset_index()


def shift_plot(results: pd.DataFrame) -> bytes:
    """Accuracy on val -> inv -> bal per method (mean and std over seeds)."""
    acc = results[(results["target"] == "y") & (results["metric"] == "accuracy")]
    acc = acc[acc["split"].isin(["val", "inv", "bal"])]
    stats = _mean_std(acc, ["method", "split"])
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    order = [s for s in ["val", "inv", "bal"] if s in set(stats["split"])]
    for method, part in stats.groupby("method", sort=False):
        part = part.set_index("split").reindex(order)
        ax.errorbar(
            order,
            part["mean"] * 100,
            yerr=part["std"].fillna(0) * 100,
            marker="o",
            capsize=3,
            label=method,
        )
    ax.set_ylabel("accuracy (%)")
    ax.set_title("with the shortcut (val), against it (inv), without it (bal)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def group_bars(results: pd.DataFrame) -> bytes:
    """Per-group accuracy on each evaluation split, one bar per method."""
    grp = results[(results["target"] == "y") & results["metric"].str.startswith("group_accuracy[")]
    grp = grp.assign(group=grp["metric"].str.slice(len("group_accuracy["), -1))
    splits = [s for s in ["val", "inv", "bal"] if s in set(grp["split"])]
    methods = list(dict.fromkeys(grp["method"]))
    fig, axes = plt.subplots(
        1, max(len(splits), 1), figsize=(4.2 * max(len(splits), 1), 3.4), squeeze=False, sharey=True
    )
    for ax, split in zip(axes[0], splits):
        part = _mean_std(grp[grp["split"] == split], ["method", "group"])
        groups = list(dict.fromkeys(part["group"]))
        x = np.arange(len(groups))
        w = 0.8 / max(len(methods), 1)
        for i, m in enumerate(methods):
            p = part[part["method"] == m].set_index("group").reindex(groups)
            ax.bar(x + i * w - 0.4 + w / 2, p["mean"] * 100, w, label=m)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=7)
        ax.set_title(split, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7)
    return _png(fig)


def training_curves(logs: dict[str, list[dict]], key: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for label, entries in logs.items():
        ys = [e.get(key) for e in entries]
        ax.plot(
            [e["epoch"] + 1 for e in entries],
            [y * 100 if y is not None else np.nan for y in ys],
            marker=".",
            label=label,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


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
    return _png(fig)
