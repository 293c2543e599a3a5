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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shortcutlab.errors import ShortcutlabError

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.6, "val": 0.15, "inv": 0.125, "bal": 0.125}


def _check_cardinalities(num_classes: int, cardinalities: dict[str, int]) -> None:
    for attr, card in cardinalities.items():
        if card != num_classes:
            raise ShortcutlabError(
                f"attribute '{attr}' has {card} values but the label has {num_classes} classes; "
                "a correlated split pairs the i-th class with the attribute's i-th category "
                "(correlation = P(z = y)), so it needs as many values as classes (binarise the "
                "attribute or give the metadata a 'split' column)"
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
    """Realised cell counts per split: a table a user can read to trust the benchmark.

    ``notes``: one-line sentences for the user (rows kept and dropped, the group that limits the
    split, the category order behind ``correlation``); warnings start with ``"warning: "``.
    """

    counts: pd.DataFrame  # index: cell label; columns: splits
    notes: list[str] = field(default_factory=list)


def _value_name(values: Mapping[str, Sequence] | None, attr: str, code: int) -> str:
    names = (values or {}).get(attr)
    if names is not None and 0 <= code < len(names):
        return str(names[code])
    return str(code)


def _cell_label(
    attributes: list[str], cell: tuple[int, ...], values: Mapping[str, Sequence] | None = None
) -> str:
    """``y=1,site=B``: the user's category names where ``values`` has them, else the codes."""
    return ",".join(
        [f"y={cell[0]}"]
        + [f"{a}={_value_name(values, a, v)}" for a, v in zip(attributes, cell[1:])]
    )


def correlation_alignment(
    attributes: list[str], num_classes: int, values: Mapping[str, Sequence] | None = None
) -> str:
    """What ``z = y`` means for these attributes: ``y=0 with site=A, y=1 with site=B``.

    An attribute's code i is its i-th category in sorted order, and ``z = y`` means the same
    code, so ``correlation`` pairs the i-th class with the i-th category of every attribute.
    """
    parts = []
    for a in attributes:
        pairs = ", ".join(f"y={c} with {a}={_value_name(values, a, c)}" for c in range(num_classes))
        parts.append(pairs)
    return "; ".join(parts)


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
    values: Mapping[str, Sequence] | None = None,
    min_group_size: int = 1,
    group_column: str | None = None,
) -> tuple[pd.DataFrame, SplitReport]:
    """Assign rows of ``meta`` to train/val/inv/bal at ``correlation``; drop the rows not needed.

    ``correlation`` is ``P(z = y)`` in train and val: code i of an attribute (its i-th category
    in sorted order, ``values[attr][i]``) goes with class i. The design fixes every group's share
    of every split (classes equally frequent), so the group with the fewest images for its
    share, the *limiting group*, is used up and sets the size of every split; the surplus of the
    other groups is dropped. Nothing is oversubscribed: no group is asked for more rows than it
    has, and every ``bal`` group gets the same number. Group names use ``values`` (the user's
    category names) where given.

    Raises a ``ShortcutlabError`` naming the limiting group when a needed group would get fewer
    than ``min_cell`` rows in some split. The report's ``notes`` say what was kept and dropped
    and why, and warn (``"warning: ..."``) about groups with fewer than ``min_group_size``
    images in a split.

    ``group_column`` (e.g. ``patient_id``): rows that share its value (a patient's images) all
    go to one split, or are dropped together. Whole patients are assigned first: in a seeded
    random order, each patient goes to the split whose remaining demand (the design's rows per
    group and split, as above) its rows fill most, relative to that demand; a patient that no
    split still needs is dropped. Within each split the rows are then subsampled per group to
    the design's proportions, as large as the rows the split received allow, so ``correlation``
    holds exactly (up to rounding) and a split's size can fall short of its fraction by about a
    patient's rows per group. No patient is in two splits. Patients with rows of the scarcest
    groups are placed first, so that every split gets some of them.
    """
    fractions = fractions or DEFAULT_FRACTIONS
    cards = {a: max(int(meta[a].max()) + 1, len((values or {}).get(a, ()))) for a in attributes}
    _check_cardinalities(num_classes, cards)
    cell_of_row = list(zip(meta["y"].astype(int), *[meta[a].astype(int) for a in attributes]))
    available = pd.Series(cell_of_row, dtype=object).value_counts().to_dict()
    probs = {s: cell_probabilities(s, num_classes, cards, correlation) for s in fractions}
    cells = list(next(iter(probs.values())))
    demand = {c: sum(fractions[s] * probs[s][c] for s in fractions) for c in cells}

    def label(c: tuple[int, ...]) -> str:
        return _cell_label(attributes, c, values)

    for c in cells:
        if demand[c] > 0 and available.get(c, 0) == 0:
            raise ShortcutlabError(
                f"group {label(c)} has no images; every (label, attribute) group needs images "
                "to build the inv and bal splits (or give the data its own splits: a 'split' "
                "column in the CSV)"
            )
    ratio = {c: available.get(c, 0) / demand[c] for c in cells if demand[c] > 0}
    scale = min(ratio.values())
    # the limiting group(s): used up by the design; ties are named together
    limiting = [c for c in ratio if ratio[c] <= scale * (1 + 1e-9)]
    lim_text = _limiting_text(limiting, available, label)
    wanted = _realisable_counts(scale, fractions, probs, cells, available)
    for s in fractions:
        for c in cells:
            if probs[s][c] > 0 and wanted[s][c] < min_cell:
                raise ShortcutlabError(
                    f"the {s} split would get only {wanted[s][c]} image(s) of group {label(c)} "
                    f"(at least {min_cell} needed): the design at correlation {correlation:g} "
                    f"(P(z = y), pairing {correlation_alignment(attributes, num_classes, values)}"
                    f") uses up {lim_text} at {int(scale)} rows in all; add images of "
                    f"{' or '.join(label(c) for c in limiting)} or give the data its own "
                    "splits (a 'split' column in the CSV)"
                )
    rng = np.random.default_rng(seed)
    if group_column is not None:
        split, group_note = _split_by_group(
            meta, cell_of_row, cells, fractions, probs, wanted, group_column, rng, label
        )
    else:
        split = np.full(len(meta), "", dtype=object)
        rows_by_cell: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(cell_of_row):
            rows_by_cell.setdefault(c, []).append(i)
        for c, rows in rows_by_cell.items():
            rows = rng.permutation(rows)
            start = 0
            for s in fractions:
                n = wanted[s].get(c, 0)
                split[rows[start : start + n]] = s
                start += n
    out = meta.copy()
    out["split"] = split
    out = out[out["split"] != ""].reset_index(drop=True)
    report = split_report(out, attributes, values)
    report.notes += _build_notes(
        meta, out, attributes, num_classes, correlation, values, available, lim_text, label
    )
    if group_column is not None:
        report.notes.append(group_note)
    report.notes += small_group_warnings(report.counts, min_group_size)
    return out, report


def _split_by_group(
    meta: pd.DataFrame,
    cell_of_row: list[tuple[int, ...]],
    cells: list[tuple[int, ...]],
    fractions: dict[str, float],
    probs: dict[str, dict[tuple[int, ...], float]],
    wanted: dict[str, dict[tuple[int, ...], int]],
    group_column: str,
    rng: np.random.Generator,
    label,
) -> tuple[np.ndarray, str]:
    """Each row's split with whole groups of ``group_column`` per split (``build_splits``)."""
    raw = meta[group_column]
    ids = np.where(
        raw.isna(), "\0row" + pd.Series(np.arange(len(meta))).astype(str), raw.astype(str)
    )
    codes, uniques = pd.factorize(pd.Series(ids))
    index = {c: j for j, c in enumerate(cells)}
    row_cell = np.array([index[c] for c in cell_of_row], dtype=np.int64)
    counts = np.zeros((len(uniques), len(cells)), dtype=np.int64)
    np.add.at(counts, (codes, row_cell), 1)
    names = list(fractions)
    need = np.array([[wanted[s][c] for c in cells] for s in names], dtype=float)
    remaining, weight = need.copy(), 1.0 / np.maximum(need, 1.0)
    owner = np.full(len(uniques), -1)
    # patients with rows of the scarcest groups (rows per row of demand) are placed first
    scarcity = counts.sum(axis=0) / np.maximum(need.sum(axis=0), 1e-9)
    rarest = np.where(counts > 0, scarcity[None, :], np.inf).min(axis=1)
    order = rng.permutation(len(uniques))
    for g in order[np.argsort(rarest[order], kind="stable")]:
        useful = np.minimum(counts[g], remaining)
        # rows that fill a split's group, weighted by how much of the group is still missing
        gain = (useful * weight * remaining * weight).sum(axis=1)
        s = int(np.argmax(gain))
        if gain[s] > 0:
            owner[g] = s
            remaining[s] -= useful[s]
    split = np.full(len(meta), "", dtype=object)
    row_owner = owner[codes]
    for k, s in enumerate(names):
        got = np.bincount(row_cell[row_owner == k], minlength=len(cells))
        asked = need[k] > 0
        # the design's rows scaled by the worst-served group's share, so proportions hold
        ratio = (
            float(np.min(np.minimum(got, need[k])[asked] / need[k][asked])) if asked.any() else 0
        )
        final = np.floor(need[k] * ratio + 1e-9).astype(int)
        for j, c in enumerate(cells):
            if asked[j] and final[j] < 1:
                raise ShortcutlabError(
                    f"the {s} split would get no image of group {label(c)} once whole "
                    f"{group_column}s are kept together; add images of that group or give the "
                    "data its own splits"
                )
            rows = rng.permutation(np.flatnonzero((row_owner == k) & (row_cell == j)))
            split[rows[: final[j]]] = s
    used = int((owner >= 0).sum())
    note = (
        f"split builder: whole {group_column}s kept together ({used} of {len(uniques)} used, "
        f"none in two splits); each split keeps the design's proportions of the rows its "
        f"{group_column}s bring, so its size can fall short of its fraction"
    )
    return split, note


def _realisable_counts(
    scale: float,
    fractions: dict[str, float],
    probs: dict[str, dict[tuple[int, ...], float]],
    cells: list[tuple[int, ...]],
    available: dict[tuple[int, ...], int],
) -> dict[str, dict[tuple[int, ...], int]]:
    """Rows per (split, group) for ``scale`` rows in all: each group's share rounded down, then
    the rows left by rounding handed out by largest remainder to groups that still have images
    (never to ``bal``, whose groups stay equal). No group is asked for more than it has."""
    n_split = {s: int(scale * fractions[s]) for s in fractions}
    raw = {s: {c: n_split[s] * probs[s][c] for c in cells} for s in fractions}
    wanted = {s: {c: int(np.floor(raw[s][c] + 1e-9)) for c in cells} for s in fractions}
    spare = {c: available.get(c, 0) - sum(wanted[s][c] for s in fractions) for c in cells}
    for s in fractions:
        if s == "bal":
            continue
        left = n_split[s] - sum(wanted[s].values())
        for c in sorted(cells, key=lambda c: raw[s][c] - wanted[s][c], reverse=True):
            if left <= 0:
                break
            if probs[s][c] > 0 and spare[c] > 0:
                wanted[s][c] += 1
                spare[c] -= 1
                left -= 1
    return wanted


def _limiting_text(limiting: list[tuple[int, ...]], available: dict, label) -> str:
    """``group y=1,site=A (18 images)`` or, for ties, ``groups ... and ... (18, 18 images)``."""
    if len(limiting) == 1:
        return f"group {label(limiting[0])} ({available[limiting[0]]} images)"
    names = " and ".join(label(c) for c in limiting)
    return f"groups {names} ({', '.join(str(available[c]) for c in limiting)} images)"


def _build_notes(
    meta: pd.DataFrame,
    out: pd.DataFrame,
    attributes: list[str],
    num_classes: int,
    correlation: float,
    values: Mapping[str, Sequence] | None,
    available: dict[tuple[int, ...], int],
    lim_text: str,
    label,
) -> list[str]:
    """The split builder's account: the pairing behind ``correlation``, rows kept per split,
    rows dropped per group, and the group that limits the design."""
    notes = []
    if attributes:
        z = attributes[0] if len(attributes) == 1 else "z"
        each = "" if len(attributes) == 1 else f" for each of {', '.join(attributes)}"
        notes.append(
            f"split builder: correlation {correlation:g} is P({z} = y){each} in train and val "
            f"(inv: {1 - correlation:g}, bal: none), pairing the categories in sorted order "
            f"with the classes: {correlation_alignment(attributes, num_classes, values)}"
        )
    sizes = out["split"].value_counts()
    per_split = ", ".join(f"{s} {int(sizes[s])}" for s in split_order(out["split"]))
    dropped = len(meta) - len(out)
    notes.append(
        f"split builder: kept {len(out)} of {len(meta)} rows ({per_split}); dropped {dropped}"
    )
    if dropped:
        used = pd.Series(
            list(zip(out["y"].astype(int), *[out[a].astype(int) for a in attributes])),
            dtype=object,
        ).value_counts()
        drops = [
            f"{label(c)} {n - int(used.get(c, 0))} of {n}"
            for c, n in sorted(available.items())
            if n - int(used.get(c, 0)) > 0
        ]
        notes.append(
            "split builder: the design fixes each group's share of every split (classes "
            f"equally frequent, P(z = y) as above), so {lim_text}, the scarcest for its share, "
            "is used up and sets the size of every split; the others' surplus is dropped: "
            + ", ".join(drops)
            + " (to keep more: add images of the limiting group, change dataset.correlation, or "
            "give the data its own splits, e.g. a 'split' column in the CSV)"
        )
    return notes


def split_order(splits: pd.Series) -> list[str]:
    order = ["train", "val", "inv", "bal", "external", "test"]
    present = list(dict.fromkeys(splits.astype(str)))
    return [s for s in order if s in present] + [s for s in present if s not in order]


def small_group_warnings(counts: pd.DataFrame, min_group_size: int) -> list[str]:
    """One ``"warning: ..."`` line per split with groups of 1 to ``min_group_size - 1`` images;
    ``counts`` is a ``SplitReport.counts`` table (groups x splits). A group with no image in a
    split is not listed here: the split design leaves some empty on purpose (correlation 1, a
    target domain), and an empty training group is the runner's check
    (``data.grouping.empty_train_groups``)."""
    out = []
    for s in counts.columns:
        if s == "target_unlabelled":  # no labels are used there
            continue
        col = counts[s]
        small = col[(col < min_group_size) & (col > 0)]
        if len(small):
            groups = ", ".join(f"{g} {int(n)}" for g, n in small.items())
            why = (
                "methods learn these groups from a handful of images"
                if s == "train"
                else "their group accuracies (and the worst group) rest on a handful of images"
            )
            out.append(
                f"warning: split {s} has groups with fewer than {min_group_size} images "
                f"(dataset.min_group_size): {groups}; {why}"
            )
    return out


def split_report(
    meta: pd.DataFrame, attributes: list[str], values: Mapping[str, Sequence] | None = None
) -> SplitReport:
    """Images per group (named with ``values``, the user's categories, where given) and split."""
    labels = [
        _cell_label(attributes, tuple(int(v) for v in row), values)
        for row in meta[["y", *attributes]].itertuples(index=False)
    ]
    counts = pd.crosstab(pd.Series(labels, name="group"), meta["split"].astype(str))
    order = [s for s in ["train", "val", "inv", "bal", "test"] if s in counts.columns]
    counts = counts[order + [c for c in counts.columns if c not in order]]
    return SplitReport(counts)
