"""A minimal ``RunContext`` (the protocol in methods/base.py) for hook unit tests.

``tests/test_contract.py`` checks it against the protocol, member by member and signature by
signature, beside the runner's ``Context``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from shortcutlab.methods.base import EpochCallback, Method, TaskInfo, Tensors
from shortcutlab.store.layout import RunLayout


def as_batch(tensors: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    batch = {k: v[rows] for k, v in tensors.items() if k != "mask"}
    if batch["x"].dtype == torch.uint8:
        batch["x"] = batch["x"].float() / 255.0
    return batch


class FakeContext:
    """``train``/``val``/``holdout`` tensor dicts, ``batches``, ``fit`` and ``predict``; records
    the ``fit`` calls. Its files go to a temporary folder unless ``layout`` is given."""

    def __init__(
        self,
        info: TaskInfo,
        train: Tensors,
        val: Tensors | None = None,
        holdout: Tensors | None = None,
        batch_size: int = 64,
        seed: int = 0,
        unlabelled: Tensors | None = None,
        layout: RunLayout | None = None,
    ):
        self.info, self.train, self.val, self.holdout = info, train, val, holdout
        self.unlabelled = unlabelled
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device("cpu")
        self.layout = layout or RunLayout.single(Path(tempfile.mkdtemp()), "fake", seed)
        self.samples_seen = 0
        self.progress = None  # no display for long steps outside fit
        self.fit_calls: list[tuple[object, int]] = []

    def autocast(self):
        return contextlib.nullcontext()

    def batches(
        self,
        tensors: Tensors,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensors]:
        n, bs = len(tensors["y"]), batch_size or self.batch_size
        gen = generator or torch.Generator().manual_seed(self.seed)
        if weights is not None:
            order = torch.multinomial(weights.double(), n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for start in range(0, n, bs):
            yield as_batch(tensors, order[start : start + bs])

    def fit(
        self,
        method: Method,
        epochs: int,
        tensors: Tensors | None = None,
        on_epoch: EpochCallback | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        self.fit_calls.append((method, epochs))
        method.train()
        losses: dict[str, float] = {}
        for epoch in range(epochs):
            for batch in self.batches(self.train if tensors is None else tensors):
                losses = method.update(batch)
                self.samples_seen += len(batch["y"])
            if on_epoch is not None:
                on_epoch(epoch, losses)
        return losses

    def predict(self, method: Method, tensors: Tensors) -> torch.Tensor:
        method.eval()
        with torch.no_grad():
            return torch.cat([method.predict(b["x"]) for b in self.batches(tensors, shuffle=False)])

    def features(self, method: Method, tensors: Tensors) -> dict[str, np.ndarray]:
        method.eval()
        parts: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for b in self.batches(tensors, shuffle=False):
                for k, v in method.features(b["x"]).items():
                    parts.setdefault(k, []).append(v.numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}
