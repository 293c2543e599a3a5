"""``ImageTable``: images, their metadata and ROI masks, held in memory.

The metadata has one row per image with the columns ``y`` (integer class), one integer column per
attribute in ``attributes`` (the spurious/sensitive factors z1..zk) and ``split``. Every source
(embedded synthetic data, CSV + image folder, MedMNIST-style npz) produces one of these, so the
split builder, the runner and the evaluation never care where the data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch


@dataclass
class ImageTable:
    images: np.ndarray  # uint8, (N, C, H, W)
    meta: pd.DataFrame  # columns: y, <attributes...>, split (+ anything else, e.g. provenance)
    attributes: list[str]
    num_classes: int
    masks: np.ndarray | None = None  # bool, (N, H, W); True = region of interest
    name: str = "data"
    attribute_values: dict[str, list] = field(default_factory=dict)  # code -> original category

    def __post_init__(self) -> None:
        if len(self.images) != len(self.meta):
            raise ValueError("images and metadata differ in length")
        self.meta = self.meta.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def splits(self) -> list[str]:
        order = ["train", "val", "inv", "bal", "test"]
        present = list(dict.fromkeys(self.meta["split"].astype(str)))
        return [s for s in order if s in present] + [s for s in present if s not in order]

    def select(self, index: np.ndarray) -> ImageTable:
        index = np.asarray(index)
        return ImageTable(
            images=self.images[index],
            meta=self.meta.iloc[index].reset_index(drop=True),
            attributes=list(self.attributes),
            num_classes=self.num_classes,
            masks=None if self.masks is None else self.masks[index],
            name=self.name,
            attribute_values=dict(self.attribute_values),
        )

    def split(self, name: str) -> ImageTable:
        return self.select(np.flatnonzero(self.meta["split"].astype(str).to_numpy() == name))

    def group_ids(self) -> np.ndarray:
        """Group id of each row: the joint cell (y, z1, ..., zk), numbered in mixed radix."""
        return group_ids(
            self.meta, self.attributes, self.num_classes, self.attribute_cardinalities()
        )

    def attribute_cardinalities(self) -> list[int]:
        return [int(self.meta[a].max()) + 1 if len(self.meta) else 1 for a in self.attributes]

    def tensors(self) -> dict[str, torch.Tensor]:
        """x as float in [0, 1], y, z (N, k) and group ids, ready for the runner."""
        z = np.array(self.meta[self.attributes].to_numpy(dtype=np.int64)).reshape(len(self), -1)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(self.images)),
            "y": torch.tensor(np.array(self.meta["y"].to_numpy(dtype=np.int64))),
            "z": torch.tensor(z),
            "g": torch.tensor(np.array(self.group_ids(), dtype=np.int64)),
        }


def group_ids(
    meta: pd.DataFrame, attributes: list[str], num_classes: int, cardinalities: list[int]
) -> np.ndarray:
    gid = meta["y"].to_numpy(dtype=np.int64).copy()
    for attr, card in zip(attributes, cardinalities):
        gid = gid * card + meta[attr].to_numpy(dtype=np.int64)
    return gid


def group_names(attributes: list[str], num_classes: int, cardinalities: list[int]) -> list[str]:
    """Readable names of the joint groups in the order of ``group_ids``: ``y=1,sex=0,age=1``."""
    names = [f"y={c}" for c in range(num_classes)]
    for attr, card in zip(attributes, cardinalities):
        names = [f"{n},{attr}={v}" for n in names for v in range(card)]
    return names
