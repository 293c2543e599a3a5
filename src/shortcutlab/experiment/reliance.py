"""The runner's and ``audit``'s counterfactual-reliance step (``evaluation/reliance.py``;
docs/methods.md section 8): for every evaluated split of an embedded phantom (exact
counterfactuals) or of any data (``generated``: the Latent Drifting generator), the rows of
``y`` and every attribute of the config, and for the first seed a grid of the images whose
prediction moved most when the shortcut attribute changed (``figures/cf_most_flipped_*``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from shortcutlab.data.table import ImageTable
from shortcutlab.evaluation.reliance import (
    Reliance,
    check_mode,
    generated_factors,
    reliance_rows,
)

#: mode ``generated``: (split, split table, factor) -> uint8 counterfactual images
Counterfactuals = Callable[[str, ImageTable, str], np.ndarray]

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
    generated: Counterfactuals | None = None,
    limit: int | None = None,
) -> list[Reliance]:
    """Reliance of ``y`` and each attribute on one split; [] for data without counterfactuals
    (``mode`` ``auto``) or with ``mode`` ``none``. ``generated``: the counterfactual maker of
    mode ``generated`` (``generated_counterfactuals``). ``limit``: at most this many rows, a
    seeded random subset (the same rows for every mode and model of one seed)."""
    mode = check_mode(mode, table)
    if mode is None or len(table) == 0:
        return []
    if mode == "generated" and generated is None:
        raise ValueError("mode 'generated' needs the generated counterfactual maker")
    rows = subset_rows(len(table), limit, ctx.seed)
    if rows is not None:
        table = table.select(rows)
        index = torch.from_numpy(rows)
        part = {k: v[index] if isinstance(v, torch.Tensor) else v for k, v in part.items()}
        probs = probs[rows]

    def predict(images: np.ndarray) -> np.ndarray:
        cf = dict(part)
        cf["x"] = torch.from_numpy(np.ascontiguousarray(images))
        return torch.softmax(ctx.predict(method, cf), 1).numpy()

    if mode == "generated":
        factors = generated_factors(table)
        make = lambda t, f: generated(split, t, f)  # noqa: E731
    else:
        factors, make = ["y", *table.attributes], None
    return reliance_rows(
        split, table, predict, probs, factors, table.grouper, mode, n_boot, ctx.seed, make
    )


def subset_rows(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """The rows reliance scores when a split has more than ``limit``: a sorted random subset
    seeded by the run's seed (None: all rows)."""
    if limit is None or n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def generated_counterfactuals(cfg, table: ImageTable, seed: int, progress=None) -> Counterfactuals:
    """Mode ``generated``: ``(split, split table, factor) -> uint8 images`` with ``factor``
    flipped by the Latent Drifting generator (docs/methods.md section 7) fitted on the
    *training* split of ``table`` with the config's ``counterfactual-aug`` hyperparameters and
    ``seed``, the same cached model the method and ``shortcutlab counterfactual`` use. The
    generator is fitted (or loaded) on first use; each (split, factor) is generated once."""
    from pathlib import Path

    from shortcutlab.data.sources import cache_dir
    from shortcutlab.experiment.config import MethodSpec
    from shortcutlab.experiment.context import tensors_of
    from shortcutlab.experiment.counterfactual import METHOD
    from shortcutlab.experiment.hparams import method_hparams
    from shortcutlab.experiment.runner import task_info
    from shortcutlab.generative.counterfactuals import counterfactuals
    from shortcutlab.methods.counterfactual_aug import drift_params, generator_for, parse_delta

    hp = method_hparams(MethodSpec(name=METHOD), cfg)
    params = drift_params(hp)
    info = task_info(table, cfg, 1)
    cache = Path(hp["cache"] or cache_dir() / "generated")
    state: dict = {}
    done: dict[tuple[str, str, str], np.ndarray] = {}

    def make(split: str, part_table: ImageTable, factor: str) -> np.ndarray:
        if "model" not in state:
            train = tensors_of(table.split("train"))
            model, st = generator_for(train, info, params, seed, cache, None, progress)
            given = parse_delta(hp["delta"])
            state.update(model=model, delta=float(st["delta"] if given is None else given))
        key = (split, factor, hashlib.sha1(part_table.images.tobytes()).hexdigest())
        if key not in done:
            part = tensors_of(part_table)
            cond = {"y": part["y"], **{a: part["z"][:, j] for j, a in enumerate(info.attributes)}}
            new = 1 - cond[factor].numpy()
            images = counterfactuals(
                state["model"],
                part["x"],
                cond,
                factor,
                new,
                params.sample_steps,
                params.guidance,
                state["delta"],
                batch_size=params.batch_size,
                progress=progress,
                label=f"counterfactuals: {split}, {factor} flipped",
            )
            done[key] = images.numpy()
        return done[key]

    return make


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
    if result.cf is not None:
        cf = result.cf[np.sort(order)]
    else:
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
