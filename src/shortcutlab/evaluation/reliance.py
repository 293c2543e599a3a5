"""Counterfactual reliance: how far a model's output moves when one factor of the image changes
(docs/methods.md section 8, "Counterfactual reliance"; FastDiME-Med's shortcut measures).

For a factor ``f`` (an attribute, or ``y`` itself) every evaluated image ``x`` is paired with
``x'``, the same image with only ``f`` changed: the phantom's exact counterfactual
(``data/counterfactual.true_counterfactual``, mode ``exact``) or a generated one (mode
``generated``: the Latent Drifting generator fitted on the training split, for any data;
``experiment/reliance.py``). With ``p`` the probability of class 1 (for more classes: of the
class predicted on ``x``):

- ``cf_flip_rate``: share of images whose predicted class changes, ``argmax p(x) != argmax p(x')``;
- ``cf_mean_abs_delta``: mean ``|p(x) - p(x')|``;
- ``cf_signed_delta``: mean ``p(x') - p(x)`` over images whose factor went 0 -> 1 minus the same
  over 1 -> 0, so it is positive when turning the factor on pushes towards class 1 (0 when the
  model ignores the factor);

each with a percentile bootstrap CI over images (``_ci_low``/``_ci_high``) and per joint group
(``cf_flip_rate[<group>]``). A model that ignores ``f`` has flip rate 0; one that reads only ``f``
flips on every image. The rows go to results.csv with ``target`` = the changed factor
(docs/contracts.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from shortcutlab.data.counterfactual import has_exact_counterfactuals, true_counterfactual
from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.metrics import bootstrap_ci

COUNTERFACTUAL_MODES = ("exact", "generated")
Predict = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, C, H, W) -> probs (N, C)

__all__ = [
    "COUNTERFACTUAL_MODES",
    "Reliance",
    "check_mode",
    "counterfactual_images",
    "generated_factors",
    "reliance_of_factor",
    "reliance_rows",
]


@dataclass
class Reliance:
    """One factor's reliance on one split: the rows, and per image how far the output moved
    (for the grid of the most-flipped images)."""

    factor: str
    rows: list[dict]
    delta: np.ndarray  # p(x') - p(x), per image
    flipped: np.ndarray  # bool, per image
    cf: np.ndarray | None = None  # the counterfactual images (uint8), for the grid


def check_mode(mode: str | None, table: ImageTable) -> str | None:
    """The counterfactual mode to use on ``table``: None (skip) for user data without a mode,
    ``exact`` for the phantoms by default; one sentence for a mode the data cannot serve."""
    if mode in (None, "auto"):
        return "exact" if has_exact_counterfactuals(table) else None
    if mode == "none":
        return None
    if mode not in COUNTERFACTUAL_MODES:
        raise ShortcutlabError(f"--counterfactual must be exact, generated or none, not '{mode}'")
    if mode == "generated":
        if not generated_factors(table):
            raise ShortcutlabError(
                "--counterfactual generated flips y or a two-valued attribute; the data has neither"
            )
        return mode
    if not has_exact_counterfactuals(table):
        true_counterfactual(table.select(np.arange(0)), "y")  # raises the data layer's sentence
    return mode


def generated_factors(table: ImageTable) -> list[str]:
    """The factors a generator can flip for reliance: ``y`` when it has two classes and every
    two-valued attribute (a counterfactual of a many-valued field needs a target value)."""
    out = ["y"] if table.num_classes == 2 else []
    for factor in table.attributes:
        if set(np.unique(table.meta[factor].to_numpy()).tolist()) <= {0, 1}:
            out.append(factor)
    return out


def counterfactual_images(table: ImageTable, factor: str, mode: str = "exact") -> np.ndarray:
    """uint8 (N, C, H, W): every row of ``table`` with ``factor`` flipped (the phantom's exact
    counterfactual; generated ones come from ``experiment/reliance.generated_counterfactuals``)."""
    if mode != "exact":
        raise ShortcutlabError(f"counterfactual_images renders exact counterfactuals, not {mode}")
    return true_counterfactual(table, factor)


def _score(probs: np.ndarray, cls: np.ndarray) -> np.ndarray:
    if probs.shape[1] == 2:
        return probs[:, 1]
    return probs[np.arange(len(probs)), cls]


def reliance_of_factor(
    split: str,
    factor: str,
    p_orig: np.ndarray,
    p_cf: np.ndarray,
    source_value: np.ndarray,
    gid: np.ndarray | None = None,
    group_names: Sequence[str] = (),
    n_boot: int = 200,
    seed: int = 0,
) -> Reliance:
    """The reliance rows of one factor from the predictions on the sources and their
    counterfactuals; ``source_value`` is the factor's value in each source image (0/1)."""
    p_orig, p_cf = np.asarray(p_orig, float), np.asarray(p_cf, float)
    pred = p_orig.argmax(1)
    flipped = pred != p_cf.argmax(1)
    delta = _score(p_cf, pred) - _score(p_orig, pred)
    # +1 when the counterfactual turned the factor on, -1 when it turned it off
    direction = np.where(np.asarray(source_value) == 0, 1.0, -1.0)
    rows: list[dict] = []

    def add(metric: str, value: float) -> None:
        rows.append({"split": split, "target": factor, "metric": metric, "value": float(value)})

    if len(pred) == 0:
        return Reliance(factor, rows, delta, flipped)
    for name, values in (
        ("cf_flip_rate", flipped.astype(float)),
        ("cf_mean_abs_delta", np.abs(delta)),
        ("cf_signed_delta", direction * delta),
    ):
        add(name, values.mean())
        lo, hi = bootstrap_ci(values, n_boot, seed)
        add(f"{name}_ci_low", lo)
        add(f"{name}_ci_high", hi)
    if gid is not None:
        for g, name in enumerate(group_names):
            sel = gid == g
            if sel.any():
                add(f"cf_flip_rate[{name}]", flipped[sel].mean())
                add(f"cf_mean_abs_delta[{name}]", np.abs(delta[sel]).mean())
    return Reliance(factor, rows, delta, flipped)


def reliance_rows(
    split: str,
    table: ImageTable,
    predict: Predict,
    p_orig: np.ndarray,
    factors: Sequence[str],
    grouper=None,
    mode: str = "exact",
    n_boot: int = 200,
    seed: int = 0,
    make_counterfactuals: Callable[[ImageTable, str], np.ndarray] | None = None,
) -> list[Reliance]:
    """Reliance of every factor in ``factors`` on the rows of ``table`` (one split), whose
    predicted probabilities are ``p_orig``. ``grouper`` (the data's) names the joint groups.
    ``make_counterfactuals(table, factor)`` gives the images with ``factor`` flipped (default:
    the phantom's exact ones)."""
    make = make_counterfactuals or (lambda t, f: counterfactual_images(t, f, mode))
    gid, names = None, ()
    if grouper is not None and len(table):
        gid, names = grouper.ids_of_meta(table.meta), grouper.names()
    out = []
    for factor in factors:
        cf = np.asarray(make(table, factor))
        p_cf = predict(cf)
        source = table.meta[factor].to_numpy(dtype=np.int64)
        result = reliance_of_factor(split, factor, p_orig, p_cf, source, gid, names, n_boot, seed)
        result.cf = cf
        out.append(result)
    return out
