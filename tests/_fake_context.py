"""A minimal stand-in for the runner's ``RunContext`` (methods/base.py) for hook unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from shortcutlab.methods.base import TaskInfo


def as_batch(tensors: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    batch = {k: v[rows] for k, v in tensors.items()}
    if batch["x"].dtype == torch.uint8:
        batch["x"] = batch["x"].float() / 255.0
    return batch


class FakeContext:
    """``train``/``val``/``holdout`` tensor dicts, ``batches``, ``fit`` and ``predict``."""

    def __init__(self, info: TaskInfo, train, val=None, holdout=None, batch_size=64, seed=0):
        self.info, self.train, self.val, self.holdout = info, train, val, holdout
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device("cpu")
        self.fit_calls: list[tuple[object, int]] = []

    def batches(self, tensors, shuffle=True, weights=None, batch_size=None) -> Iterator[dict]:
        n, bs = len(tensors["y"]), batch_size or self.batch_size
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        for start in range(0, n, bs):
            yield as_batch(tensors, order[start : start + bs])

    def fit(self, method, epochs: int) -> None:
        self.fit_calls.append((method, epochs))
        method.train()
        for _ in range(epochs):
            for batch in self.batches(self.train):
                method.update(batch)

    def predict(self, method, tensors) -> torch.Tensor:
        method.eval()
        with torch.no_grad():
            return torch.cat([method.predict(b["x"]) for b in self.batches(tensors, shuffle=False)])
