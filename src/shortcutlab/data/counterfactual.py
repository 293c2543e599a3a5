"""Exact counterfactuals and factor masks of the embedded phantoms (docs/methods.md section 8).

The phantoms draw every nuisance (position, size, texture, noise) from a stream that depends only
on the row's place in the render, never on the factors, so the same row rendered with one factor
changed is the true counterfactual: the image that differs from the source only in what that
factor draws. No real data set has this; it is the ground truth against which the toolkit scores
counterfactual reliance, generated counterfactuals, grounding maps and attribution maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError

__all__ = ["exact_factors", "has_exact_counterfactuals", "true_counterfactual", "true_factor_masks"]


def has_exact_counterfactuals(table: ImageTable) -> bool:
    """Whether ``table`` is an embedded phantom that can be rendered again row by row."""
    return table.render is not None and "render_row" in table.meta.columns


def exact_factors(table: ImageTable) -> list[str]:
    """The factors whose true counterfactual ``table`` can render: ``y`` and every attribute
    the phantom draws (those the config names and the nuisance ones)."""
    from shortcutlab.data.synthetic import SYNTHETIC

    if not has_exact_counterfactuals(table):
        return []
    return list(SYNTHETIC[table.render.name].factors)


def _factor_frame(table: ImageTable, factor: str) -> pd.DataFrame:
    from shortcutlab.data.synthetic import SYNTHETIC

    if not has_exact_counterfactuals(table):
        raise ShortcutlabError(
            f"'{table.name}' has no exact counterfactuals: only the embedded phantoms "
            f"({', '.join(SYNTHETIC)}) can render an image again with one factor changed"
        )
    factors = SYNTHETIC[table.render.name].factors
    if factor not in factors:
        raise ShortcutlabError(
            f"'{table.name}' has no factor '{factor}'; it has: {', '.join(factors)}"
        )
    return table.meta[factors].astype(np.int64).reset_index(drop=True)


def true_counterfactual(
    table: ImageTable, factor: str, value: int | np.ndarray | None = None
) -> np.ndarray:
    """uint8 (N, C, H, W): every row of ``table`` rendered again with ``factor`` set to
    ``value`` (default: flipped, ``1 - current``) and everything else as it was."""
    from shortcutlab.data.synthetic import render_rows

    frame = _factor_frame(table, factor)
    current = frame[factor].to_numpy()
    new = 1 - current if value is None else np.broadcast_to(np.asarray(value), current.shape)
    if not np.isin(new, (0, 1)).all():
        raise ShortcutlabError(f"factor '{factor}' of '{table.name}' takes the values 0 and 1")
    frame[factor] = new.astype(np.int64)
    r = table.render
    rows = table.meta["render_row"].to_numpy(dtype=np.int64)
    images, _ = render_rows(r.name, frame, rows, r.total, r.seed, r.image_size, dict(r.strengths))
    return images


def true_factor_masks(table: ImageTable, factor: str) -> np.ndarray:
    """Bool (N, H, W): the pixels ``factor`` draws in each row of ``table`` (``factor_masks``):
    lesion, effusion, atrophy, marker, ruler, ink..."""
    from shortcutlab.data.synthetic import factor_masks

    frame = _factor_frame(table, factor)
    r = table.render
    rows = table.meta["render_row"].to_numpy(dtype=np.int64)
    return factor_masks(
        r.name, frame, factor, rows, r.total, r.seed, r.image_size, dict(r.strengths)
    )
