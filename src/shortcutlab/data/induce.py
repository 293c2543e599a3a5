"""A known shortcut induced in real data (``dataset.induce``): a marker burnt into the images.

``marker``: a bright square (side ``size`` x the image side, 1/10 by default) in the top-left
corner; ``intensity``: the whole image scaled by ``scale`` (clipped to 255). Each adds a binary
attribute of its name, with categories ``no`` (code 0, paired with y=0) and ``yes`` (code 1,
paired with y=1), assigned *after* the splits are made, per split and class: in train, val and
external ``P(attribute = y) = correlation`` exactly (up to rounding, within every class), in inv
``1 - correlation``, in bal and every other split (test, target) 0.5. The label must be binary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutlab.errors import ShortcutlabError

INDUCED = ("marker", "intensity")
_LIKE_TRAIN = ("train", "val", "external")


def induce_attributes(
    meta: pd.DataFrame,
    attributes: list[str],
    values: dict[str, list],
    num_classes: int,
    induce: dict[str, dict[str, float]],
    seed: int,
) -> tuple[pd.DataFrame, list[str], dict[str, list], list[str]]:
    """``meta`` with one 0/1 column per induced attribute, the attributes and their category
    names extended, and a note each."""
    if num_classes != 2:
        raise ShortcutlabError(
            f"dataset.induce needs a binary label; this one has {num_classes} classes"
        )
    meta, attributes, values, notes = meta.copy(), list(attributes), dict(values), []
    for k, (name, spec) in enumerate(induce.items()):
        if name not in INDUCED:
            raise ShortcutlabError(
                f"dataset.induce.{name}: unknown shortcut; choose one of: {', '.join(INDUCED)}"
            )
        if name in attributes or name in meta.columns:
            raise ShortcutlabError(
                f"dataset.induce.{name}: the data already has a column '{name}'; rename it"
            )
        rng = np.random.default_rng(seed + 9973 * (k + 1))
        meta[name] = induced_codes(meta, float(spec["correlation"]), rng)
        attributes.append(name)
        values[name] = ["no", "yes"]
        c = float(spec["correlation"])
        notes.append(
            f"induce: '{name}' burnt into the images, P({name} = y) = {c:g} in train and val, "
            f"{1 - c:g} in inv, 0.5 elsewhere (y=0 with {name}=no, y=1 with {name}=yes)"
        )
    return meta, attributes, values, notes


def induced_codes(meta: pd.DataFrame, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """0/1 per row agreeing with ``y`` at the split's rate, exactly within each (split, y)."""
    y = meta["y"].to_numpy(dtype=np.int64)
    split = meta["split"].astype(str).to_numpy()
    out = 1 - y
    for s in pd.unique(split):
        rate = correlation if s in _LIKE_TRAIN else 1 - correlation if s == "inv" else 0.5
        for cls in (0, 1):
            rows = rng.permutation(np.flatnonzero((split == s) & (y == cls)))
            agree = rows[: int(round(rate * len(rows)))]
            out[agree] = cls
    return out


def marker_box(image_size: int, size: float = 0.1) -> tuple[slice, slice]:
    """Rows and columns of the marker: a square of side ``size`` x the image, 1 pixel in."""
    side = max(1, int(round(size * image_size)))
    start = 1 if image_size > side + 1 else 0
    return slice(start, start + side), slice(start, start + side)


def burn_in(
    images: np.ndarray, meta: pd.DataFrame, induce: dict[str, dict[str, float]]
) -> np.ndarray:
    """``images`` (uint8, N, C, H, W) with each induced shortcut drawn where its column is 1."""
    images = images.copy()
    if "intensity" in induce:
        on = meta["intensity"].to_numpy() == 1
        scale = float(induce["intensity"].get("scale", 1.2))
        scaled = np.clip(images[on].astype(np.float32) * scale, 0, 255)
        images[on] = scaled.round().astype(np.uint8)
    if "marker" in induce:
        on = np.flatnonzero(meta["marker"].to_numpy() == 1)
        rows, cols = marker_box(images.shape[-1], float(induce["marker"].get("size", 0.1)))
        images[on, :, rows, cols] = 255
    return images
