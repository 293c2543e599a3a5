"""One grouper for the whole toolkit (after WILDS' ``CombinatorialGrouper``).

A group is a joint cell ``(y, z1, ..., zk)``. Its id is the mixed-radix number
``((y * c1 + z1) * c2 + z2) ...`` with each attribute's cardinality ``c_i`` taken from the *full*
table, never from a subset: a split that lacks an attribute's top value is numbered in the same
radix as every other split and as ``TaskInfo.num_groups``. Groups are named with the user's
original category names where the loader kept them (``y=1,site=hospital_b``), else with the codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Grouper:
    num_classes: int
    attributes: tuple[str, ...]
    cardinalities: tuple[int, ...]
    # attribute -> original category name of each code (code i is ``values[attr][i]``)
    values: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))
        object.__setattr__(self, "cardinalities", tuple(int(c) for c in self.cardinalities))
        if len(self.attributes) != len(self.cardinalities):
            raise ValueError("one cardinality per attribute")

    @classmethod
    def from_meta(
        cls,
        meta: pd.DataFrame,
        attributes: Sequence[str],
        num_classes: int,
        values: Mapping[str, Sequence[str]] | None = None,
    ) -> Grouper:
        """Cardinalities from the full table: the largest code + 1 (or the number of named
        categories, if larger)."""
        values = dict(values or {})
        cards = []
        for a in attributes:
            top = int(meta[a].max()) + 1 if len(meta) else 1
            cards.append(max(top, len(values.get(a, ()))))
        return cls(num_classes, tuple(attributes), tuple(cards), values)

    @property
    def num_groups(self) -> int:
        return int(self.num_classes * np.prod(self.cardinalities, dtype=np.int64))

    def ids(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Group id of each row of ``y`` (N,) and ``z`` (N, k)."""
        gid = np.asarray(y, dtype=np.int64).copy()
        z = np.asarray(z, dtype=np.int64).reshape(len(gid), -1)
        for j, card in enumerate(self.cardinalities):
            gid = gid * card + z[:, j]
        return gid

    def ids_of_meta(self, meta: pd.DataFrame) -> np.ndarray:
        z = meta[list(self.attributes)].to_numpy(dtype=np.int64).reshape(len(meta), -1)
        return self.ids(meta["y"].to_numpy(dtype=np.int64), z)

    def pair_ids(self, y: np.ndarray, z: np.ndarray, j: int) -> np.ndarray:
        """Id of the cell ``(y, z_j)`` (0 .. num_classes * c_j - 1) for attribute column ``j``."""
        z = np.asarray(z, dtype=np.int64).reshape(len(y), -1)
        return np.asarray(y, dtype=np.int64) * self.cardinalities[j] + z[:, j]

    def value_name(self, attribute: str, code: int) -> str:
        names = self.values.get(attribute)
        if names is not None and 0 <= code < len(names):
            return str(names[code])
        return str(code)

    def names(self) -> list[str]:
        """Readable names in id order: ``y=1,sex=F,age=old`` (codes where no names were kept)."""
        names = [f"y={c}" for c in range(self.num_classes)]
        for attr, card in zip(self.attributes, self.cardinalities):
            names = [f"{n},{attr}={self.value_name(attr, v)}" for n in names for v in range(card)]
        return names

    def decode(self, gid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, z)`` of group ids (the inverse of ``ids``): y (N,), z (N, k)."""
        gid = np.asarray(gid, dtype=np.int64).copy()
        z = np.zeros((len(gid), len(self.cardinalities)), dtype=np.int64)
        for j in reversed(range(len(self.cardinalities))):
            gid, z[:, j] = np.divmod(gid, self.cardinalities[j])
        return gid, z


def empty_train_groups(train_g: np.ndarray, grouper: Grouper) -> list[str]:
    """Names of the groups with no training row, among those the training split could have.

    A group ``(y, z1..zk)`` counts when its class and each of its attribute values occur in
    ``train_g`` (some training row has that class, some has that value): the check is about
    combinations the training split lacks. A value with no training row at all is excused, since
    that is a domain the model never sees by design (the target site of a domain shift, whose
    rows are in the splits ``target`` and ``target_unlabelled``, or a site kept for testing);
    the loaders already refuse a train split with a single class or a single value of an
    attribute. With no attributes, the groups are the classes and all present ones count.
    """
    train_g = np.asarray(train_g, dtype=np.int64)
    present = set(np.unique(train_g).tolist())
    y, z = grouper.decode(np.array(sorted(present), dtype=np.int64))
    classes = set(y.tolist())
    seen = [set(z[:, j].tolist()) for j in range(z.shape[1])]
    all_ids = np.arange(grouper.num_groups)
    ay, az = grouper.decode(all_ids)
    names = grouper.names()
    out = []
    for g in all_ids.tolist():
        if g in present or int(ay[g]) not in classes:
            continue
        if all(int(az[g, j]) in seen[j] for j in range(az.shape[1])):
            out.append(names[g])
    return out
