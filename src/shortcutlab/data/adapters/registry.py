"""The dataset-adapter registry: ``@register_dataset("chexpert")`` on a reader of a published
layout, ``(cfg: AdapterConfig) -> pd.DataFrame`` (or ``(frame, images)`` when the images are
arrays in the data file, as MedMNIST's npz).

The frame has one row per image: ``path`` (relative to ``cfg.root`` or absolute; an id when the
images are arrays), ``y`` (class id), one column per requested attribute with readable category
names (a pandas categorical keeps its order, e.g. the age bins), ``split`` where the data set
publishes one (train/val/test), and ``patient_id`` (or ``lesion_id``) where it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shortcutlab.errors import ShortcutlabError

AdapterResult = pd.DataFrame | tuple[pd.DataFrame, np.ndarray]


@dataclass
class AdapterConfig:
    """What an adapter reads (``DatasetConfig``'s adapter keys, docs/your-data.md)."""

    name: str
    root: Path
    label: str = "y"
    attributes: list[str] = field(default_factory=list)
    uncertain: str = "zero"  # CheXpert/MIMIC -1: drop | zero | one
    frontal_only: bool = False
    age_bins: dict[str, list[float]] | None = None
    skin_tone_bins: dict[str, list[float]] | None = None
    artifacts: list[str] = field(default_factory=list)  # artefact label files
    files: dict[str, str] = field(default_factory=dict)  # role -> file, instead of the default
    notes: list[str] = field(default_factory=list)  # what the adapter dropped or mapped


ADAPTERS: dict[str, Callable[[AdapterConfig], AdapterResult]] = {}
#: adapters whose published split is used as is by default (dataset.published_split)
PUBLISHED_BY_DEFAULT: set[str] = set()


def register_dataset(
    name: str, published_split: bool = False
) -> Callable[[Callable[[AdapterConfig], AdapterResult]], Callable[[AdapterConfig], AdapterResult]]:
    def wrap(
        fn: Callable[[AdapterConfig], AdapterResult],
    ) -> Callable[[AdapterConfig], AdapterResult]:
        if name in ADAPTERS:
            raise ValueError(f"dataset adapter '{name}' registered twice")
        ADAPTERS[name] = fn
        if published_split:
            PUBLISHED_BY_DEFAULT.add(name)
        return fn

    return wrap


def get_adapter(name: str) -> Callable[[AdapterConfig], AdapterResult]:
    if name not in ADAPTERS:
        raise ShortcutlabError(
            f"unknown dataset adapter '{name}'; choose one of: {', '.join(sorted(ADAPTERS))}"
        )
    return ADAPTERS[name]
