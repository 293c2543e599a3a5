"""Split builder (methods.md section 1): train/val with the shortcut, inv against it, bal without.

For every attribute z_i, train and val draw ``P(z_i = y) = correlation`` independently given y;
``inv`` draws ``P(z_i = y) = 1 - correlation``; the optional ``external`` split (post-hoc
debiasing, e.g. SWiFT) draws like train and val but shares no image with any other split;
``bal`` makes every joint (y, z1..zk) cell the same size. Attributes with as many values as y has classes are supported; ``z_i = y`` means the
same code, and the remaining probability is shared equally by the other values.

Two entry points share the same cell design:
``design_split_cells`` gives exact cell counts for generators (the embedded datasets render exactly
those), and ``build_splits`` picks rows of an existing metadata table to realise them, as large as
the rarest cell allows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shortcutlab.errors import ShortcutlabError

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.6, "val": 0.15, "inv": 0.125, "bal": 0.125}


def _check_cardinalities(num_classes: int, cardinalities: dict[str, int]) -> None:
    for attr, card in cardinalities.items():
        if card != num_classes:
            raise ShortcutlabError(
                f"attribute '{attr}' has {card} values but the label has {num_classes} classes; "
                "a correlated split needs as many values as classes (binarise the attribute or "
                "give the metadata a 'split' column)"
            )


def cell_probabilities(
    split: str, num_classes: int, cardinalities: dict[str, int], correlation: float
) -> dict[tuple[int, ...], float]:
    """Probability of each joint cell (y, z1..zk) in ``split`` (train, val, external, inv, bal)."""
    cards = list(cardinalities.values())
    cells = list(itertools.product(range(num_classes), *[range(c) for c in cards]))
    if split == "bal":
        return {cell: 1.0 / len(cells) for cell in cells}
    if split in ("train", "val", "external"):
        c = correlation
    elif split == "inv":
        c = 1.0 - correlation
    else:
        raise ValueError(f"no cell design for split '{split}'")
    probs = {}
    for cell in cells:
        y, zs = cell[0], cell[1:]
        p = 1.0 / num_classes
        for z, card in zip(zs, cards):
            p *= c if z == y else (1.0 - c) / (card - 1)
        probs[cell] = p
    return probs


@dataclass
class SplitReport:
    """Realised cell counts per split: a table a user can read to trust the benchmark."""

    counts: pd.DataFrame  # index: cell label; columns: splits


def _cell_label(attributes: list[str], cell: tuple[int, ...]) -> str:
    return ",".join([f"y={cell[0]}"] + [f"{a}={v}" for a, v in zip(attributes, cell[1:])])


def design_split_cells(
    n_total: int,
    num_classes: int,
    cardinalities: dict[str, int],
    correlation: float,
    fractions: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Exact counts per (split, cell) for ``n_total`` images; columns split, y, <attrs>, count."""
    fractions = fractions or DEFAULT_FRACTIONS
    _check_cardinalities(num_classes, cardinalities)
    rows = []
    for split, frac in fractions.items():
        n_split = int(round(n_total * frac))
        probs = cell_probabilities(split, num_classes, cardinalities, correlation)
        counts = _largest_remainder(n_split, probs)
        for cell, n in counts.items():
            rows.append(
                {"split": split, "y": cell[0], **dict(zip(cardinalities, cell[1:])), "count": n}
            )
    return pd.DataFrame(rows)


def _largest_remainder(n: int, probs: dict[tuple[int, ...], float]) -> dict[tuple[int, ...], int]:
    """Integer counts summing to n, proportional to probs (Hamilton's method, deterministic)."""
    raw = {k: n * p for k, p in probs.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    left = n - sum(counts.values())
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[:left]:
        counts[k] += 1
    return counts


def build_splits(
    meta: pd.DataFrame,
    attributes: list[str],
    num_classes: int,
    correlation: float,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    min_cell: int = 1,
) -> tuple[pd.DataFrame, SplitReport]:
    """Assign rows of ``meta`` to train/val/inv/bal at ``correlation``; drop the rows not needed.

    The split sizes are scaled so that the rarest cell is used up and no cell is oversubscribed.
    Raises a ``ShortcutlabError`` naming the cell when a needed cell has fewer than ``min_cell``
    rows in some split.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    cards = {a: int(meta[a].max()) + 1 for a in attributes}
    _check_cardinalities(num_classes, cards)
    cell_of_row = list(zip(meta["y"].astype(int), *[meta[a].astype(int) for a in attributes]))
    available = pd.Series(cell_of_row).value_counts().to_dict()
    probs = {s: cell_probabilities(s, num_classes, cards, correlation) for s in fractions}
    cells = list(next(iter(probs.values())))
    demand = {c: sum(fractions[s] * probs[s][c] for s in fractions) for c in cells}
    for c in cells:
        if demand[c] > 0 and available.get(c, 0) == 0:
            raise ShortcutlabError(
                f"group {_cell_label(attributes, c)} has no images; every (label, attribute) "
                "group needs images to build the inv and bal splits"
            )
    scale = min(available.get(c, 0) / demand[c] for c in cells if demand[c] > 0)
    wanted = {s: _largest_remainder(int(scale * fractions[s]), probs[s]) for s in fractions}
    for s in fractions:
        for c in cells:
            if probs[s][c] > 0 and wanted[s][c] < min_cell:
                raise ShortcutlabError(
                    f"the {s} split would get only {wanted[s][c]} image(s) of group "
                    f"{_cell_label(attributes, c)} (at least {min_cell} needed); add images of "
                    "the rarest group or lower dataset.correlation"
                )
    rng = np.random.default_rng(seed)
    split = np.full(len(meta), "", dtype=object)
    rows_by_cell: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(cell_of_row):
        rows_by_cell.setdefault(c, []).append(i)
    for c, rows in rows_by_cell.items():
        rows = rng.permutation(rows)
        start = 0
        for s in fractions:
            n = min(wanted[s].get(c, 0), len(rows) - start)
            split[rows[start : start + n]] = s
            start += n
    out = meta.copy()
    out["split"] = split
    out = out[out["split"] != ""].reset_index(drop=True)
    return out, split_report(out, attributes)


def split_report(meta: pd.DataFrame, attributes: list[str]) -> SplitReport:
    labels = [
        _cell_label(attributes, tuple(int(v) for v in row))
        for row in meta[["y", *attributes]].itertuples(index=False)
    ]
    counts = pd.crosstab(pd.Series(labels, name="group"), meta["split"].astype(str))
    order = [s for s in ["train", "val", "inv", "bal", "test"] if s in counts.columns]
    counts = counts[order + [c for c in counts.columns if c not in order]]
    return SplitReport(counts)
