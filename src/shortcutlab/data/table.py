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

from shortcutlab.data.grouping import Grouper

# a copy of rows of a memory-mapped array larger than this goes to disk, not RAM
SPILL_BYTES = 64 * 2**20


def as_run(index: np.ndarray) -> slice | None:
    """``index`` as a slice when it is one ascending run of rows (``[5, 6, 7]``), else None."""
    index = np.asarray(index)
    if index.dtype == bool:
        index = np.flatnonzero(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or len(index) == 0:
        return slice(0, 0) if index.ndim == 1 and len(index) == 0 else None
    start = int(index[0])
    if start < 0 or int(index[-1]) - start != len(index) - 1:
        return None
    if len(index) > 1 and not (np.diff(index) == 1).all():
        return None
    return slice(start, start + len(index))


def take_rows(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array[index]``: a view for one ascending run of rows; a copy on disk for a large
    selection of a memory-mapped array (``SPILL_BYTES``); else the usual copy in RAM."""
    run = as_run(index)
    if run is not None:
        return array[run]
    if not isinstance(array, np.memmap):
        return array[index]
    index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
    shape = (len(index), *array.shape[1:])
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.itemsize
    if len(index) * row_bytes <= SPILL_BYTES:
        return np.asarray(array[index])
    import tempfile

    from shortcutlab.data.cache import cache_dir, release_pages, track

    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=cache_dir(), prefix=".rows-") as f:  # unlinked at once
        out = np.memmap(f, dtype=array.dtype, mode="w+", shape=shape)
    step = max(1, SPILL_BYTES // max(row_bytes, 1))
    for start in range(0, len(index), step):
        out[start : start + step] = array[index[start : start + step]]
    out.flush()
    track(out)
    release_pages()  # what was written stays in the file, not in this process's memory
    return out


@dataclass(frozen=True)
class SyntheticRender:
    """What renders an embedded phantom's table again: the dataset name, the seed, the image size,
    the factor strengths and the number of rows it was rendered with (docs/methods.md section 8)."""

    name: str
    seed: int
    image_size: int
    strengths: tuple[tuple[str, float], ...]
    total: int


@dataclass
class ImageTable:
    images: np.ndarray  # uint8, (N, C, H, W)
    meta: pd.DataFrame  # columns: y, <attributes...>, split (+ anything else, e.g. provenance)
    attributes: list[str]
    num_classes: int
    masks: np.ndarray | None = None  # bool, (N, H, W); True = region of interest
    name: str = "data"
    attribute_values: dict[str, list] = field(default_factory=dict)  # code -> original category
    # set from the full table when it is made; every subset (select, split) keeps it
    grouper: Grouper | None = None
    # what loading did, one line each, for the user to read once (the loaders of user data
    # fill it: conversions, label mapping, splits kept/dropped; warnings start "warning: ");
    # a subset (select, split) starts with none
    notes: list[str] = field(default_factory=list)
    # the metadata column naming each image's source file (None: images without files, e.g.
    # the embedded datasets); ``resolved_frame`` writes it as ``path``
    source_column: str | None = None
    # the embedded phantoms only: how the images were rendered, so any row can be rendered again
    # with one factor changed (``data/counterfactual.py``); meta then has a ``render_row`` column
    render: SyntheticRender | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(self.meta):
            raise ValueError("images and metadata differ in length")
        self.meta = self.meta.reset_index(drop=True)
        if self.grouper is None:
            self.grouper = Grouper.from_meta(
                self.meta, self.attributes, self.num_classes, self.attribute_values
            )

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
        """The rows ``index``. Images and masks are a view (no copy) when ``index`` is one
        ascending run (a split of a cache ordered by split); else a copy, which for a
        disk-backed (memory-mapped) table larger than ``SPILL_BYTES`` goes to an unlinked
        temporary file beside the cache instead of RAM."""
        index = np.asarray(index)
        return ImageTable(
            images=take_rows(self.images, index),
            meta=self.meta.iloc[index].reset_index(drop=True),
            attributes=list(self.attributes),
            num_classes=self.num_classes,
            masks=None if self.masks is None else take_rows(self.masks, index),
            name=self.name,
            attribute_values=dict(self.attribute_values),
            grouper=self.grouper,
            source_column=self.source_column,
            render=self.render,
        )

    def split(self, name: str) -> ImageTable:
        return self.select(np.flatnonzero(self.meta["split"].astype(str).to_numpy() == name))

    def group_ids(self) -> np.ndarray:
        """Group id of each row: the joint cell (y, z1, ..., zk), numbered in mixed radix with
        the full table's cardinalities (``data/grouping.py``)."""
        return self.grouper.ids_of_meta(self.meta)

    def attribute_cardinalities(self) -> list[int]:
        """Each attribute's number of values in the full table this one was selected from."""
        return list(self.grouper.cardinalities)

    def tensors(self) -> dict[str, torch.Tensor]:
        """x as uint8 (N, C, H, W), y, z (N, k) and group ids, ready for the runner."""
        z = np.array(self.meta[self.attributes].to_numpy(dtype=np.int64)).reshape(len(self), -1)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(self.images)),
            "y": torch.tensor(np.array(self.meta["y"].to_numpy(dtype=np.int64))),
            "z": torch.tensor(z),
            "g": torch.tensor(np.array(self.group_ids(), dtype=np.int64)),
        }


#: columns of a table's resolved rows that identify who an image belongs to, where present
GROUP_COLUMNS = ("patient_id", "lesion_id")


def resolved_frame(table: ImageTable) -> pd.DataFrame:
    """One row per image of ``table``: ``path`` (its source file as the data names it; empty
    for images without files), ``y``, each attribute with its original category names,
    ``split`` and ``patient_id``/``lesion_id`` where the data has them (``DIR/dataset.csv``)."""
    meta = table.meta
    col = table.source_column
    paths = meta[col].astype(str) if col and col in meta.columns else pd.Series([""] * len(meta))
    out = pd.DataFrame({"path": paths.to_numpy(), "y": meta["y"].to_numpy()})
    for a in table.attributes:
        names = table.attribute_values.get(a)
        codes = meta[a].to_numpy(dtype=np.int64)
        out[a] = [names[c] for c in codes] if names else codes
    out["split"] = meta["split"].astype(str).to_numpy()
    for g in GROUP_COLUMNS:
        if g in meta.columns:
            out[g] = meta[g].to_numpy()
    return out
