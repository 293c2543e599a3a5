"""The runner's and ``audit``'s counterfactual-reliance step (``evaluation/reliance.py``;
docs/methods.md section 8): for every evaluated split of an embedded phantom, the rows of
``y`` and every attribute of the config, and for the first seed a grid of the images whose
prediction moved most when the shortcut attribute changed (``figures/cf_most_flipped_*``).
"""

from __future__ import annotations

import numpy as np
import torch

from shortcutlab.data.table import ImageTable
from shortcutlab.evaluation.reliance import Reliance, check_mode, reliance_rows

GRID_SIZE = 8


def split_reliance(
    method,
    ctx,
    split: str,
    table: ImageTable,
    part: dict,
    probs: np.ndarray,
    n_boot: int,
    mode: str | None = "auto",
) -> list[Reliance]:
    """Reliance of ``y`` and each attribute on one split; [] for data without counterfactuals
    (``mode`` ``auto``) or with ``mode`` ``none``."""
    mode = check_mode(mode, table)
    if mode is None or len(table) == 0:
        return []

    def predict(images: np.ndarray) -> np.ndarray:
        cf = dict(part)
        cf["x"] = torch.from_numpy(np.ascontiguousarray(images))
        return torch.softmax(ctx.predict(method, cf), 1).numpy()

    factors = ["y", *table.attributes]
    return reliance_rows(
        split, table, predict, probs, factors, table.grouper, mode, n_boot, ctx.seed
    )


def save_most_flipped(
    table: ImageTable, result: Reliance, probs: np.ndarray, path, title: str
) -> bool:
    """A grid: the ``GRID_SIZE`` images whose output moved most, each above its counterfactual,
    with p(class 1) on both. False (nothing written) when no image moved."""
    from shortcutlab.data.counterfactual import true_counterfactual
    from shortcutlab.plotting import png_bytes
    from shortcutlab.report.figures import plt

    order = np.argsort(-np.abs(result.delta), kind="stable")[:GRID_SIZE]
    order = order[np.abs(result.delta[order]) > 0]
    if len(order) == 0:
        return False
    sub = table.select(np.sort(order))
    pos = {r: i for i, r in enumerate(np.sort(order))}
    cf = true_counterfactual(sub, result.factor)
    fig, axes = plt.subplots(2, len(order), figsize=(1.3 * len(order), 3.5), squeeze=False)
    p1 = probs[:, -1]
    for c, r in enumerate(order):
        for row, img in enumerate((sub.images[pos[r]], cf[pos[r]])):
            ax = axes[row, c]
            ax.imshow(
                img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0),
                cmap="gray",
                vmin=0,
                vmax=255,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            p = p1[r] if row == 0 else p1[r] + result.delta[r]
            value = int(table.meta[result.factor].iloc[r])
            value = value if row == 0 else 1 - value
            ax.set_title(f"{result.factor}={value}\np={p:.2f}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.write_bytes(png_bytes(fig))
    plt.close(fig)
    return True


def grid_reliance(found: dict[str, tuple], layout) -> None:
    """The most-flipped grid of the first attribute on inv (else bal, else val) into the
    experiment's ``figures/``."""
    split = next((s for s in ("inv", "bal", "val") if found.get(s) and found[s][1]), None)
    if split is None:
        return
    table, results, probs = found[split]
    attrs = [r for r in results if r.factor != "y"]
    if not attrs:
        return
    result = attrs[0]
    title = (
        f"{layout.method}: {split} images whose output moved most when only "
        f"'{result.factor}' changed (top: source, bottom: counterfactual)"
    )
    save_most_flipped(
        table, result, probs, layout.figure(f"cf_most_flipped_{result.factor}"), title
    )
