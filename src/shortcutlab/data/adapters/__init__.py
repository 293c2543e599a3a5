"""Readers of public data sets in their published layouts (docs/your-data.md).

Each module registers one adapter (``registry.register_dataset``); ``load_adapter_dataset``
turns its frame into an ``ImageTable`` through the CSV loader's ``table_from_frame``.
"""

from __future__ import annotations

from shortcutlab.data.adapters import (  # noqa: F401  (registers the adapters)
    chexpert,
    fitzpatrick17k,
    ham10000,
    isic2019,
    medmnist,
    mimic_cxr,
    nih_cxr14,
    waterbirds,
)
from shortcutlab.data.adapters.registry import (
    ADAPTERS,
    PUBLISHED_BY_DEFAULT,
    AdapterConfig,
    get_adapter,
    register_dataset,
)
from shortcutlab.data.table import GROUP_COLUMNS, ImageTable

__all__ = ["ADAPTERS", "AdapterConfig", "get_adapter", "load_adapter_dataset", "register_dataset"]


def load_adapter_dataset(
    cfg: AdapterConfig,
    *,
    image_size: int = 64,
    correlation: float = 0.9,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    min_group_size: int = 10,
    published_split: bool | None = None,
    induce: dict[str, dict[str, float]] | None = None,
) -> ImageTable:
    """The adapter's frame as an ImageTable. ``published_split`` (None: the adapter's default,
    True for waterbirds only): use the data set's split as is (val carved from train by patient
    when it has none); otherwise its ``test`` rows stay ``test`` and the split builder makes
    train/val/inv/bal from the rest at ``correlation``, keeping each patient in one split."""
    from shortcutlab.data.sources import table_from_frame

    out = get_adapter(cfg.name)(cfg)
    frame, images = out if isinstance(out, tuple) else (out, None)
    if published_split is None:
        published_split = cfg.name in PUBLISHED_BY_DEFAULT
    group = next((g for g in GROUP_COLUMNS if g in frame.columns), None)
    return table_from_frame(
        frame.reset_index(drop=True),
        cfg.root,
        label_column="y",
        image_column="path",
        attributes=cfg.attributes,
        image_size=image_size,
        correlation=correlation,
        seed=seed,
        fractions=fractions,
        min_group_size=min_group_size,
        group_column=group,
        name=cfg.name,
        notes=cfg.notes,
        source=f"{cfg.name} ({cfg.root})",
        split_mode="published" if published_split else "build",
        images=images,
        induce=induce,
    )
