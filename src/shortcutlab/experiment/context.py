"""The runner's ``RunContext`` (the protocol in ``methods/base.py``) and the one training loop.

``Context`` is built with keywords by the runner (``experiment/runner.py``) and by the post-hoc
commands (``experiment/posthoc.py``); ``Context.fit`` is the only training loop of the toolkit:
the runner trains the main method with it (its ``on_epoch`` callback does model selection) and
methods train helper models with it (JTT's first stage, a distillation teacher).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shortcutlab.data.augment import build_transform
from shortcutlab.data.cache import rows_read
from shortcutlab.data.table import ImageTable
from shortcutlab.experiment.loader import Feed
from shortcutlab.methods.base import EpochCallback, Method, TaskInfo, Tensors
from shortcutlab.store.layout import RunLayout

# A helper model's batches come from a stream apart from the main method's (seed + this).
HELPER_STREAM = 104729
# The rows that re-estimate batch-norm statistics come from a stream of their own (seed + this).
PRECISE_BN_STREAM = 7907


def tensors_of(table: ImageTable) -> Tensors:
    """A table as the context's CPU tensors: ``x`` (uint8), ``y``, ``z``, ``g``, ``idx`` and
    ``mask`` where the table has ROI masks."""
    t = table.tensors()
    t["idx"] = torch.arange(len(table))
    if table.masks is not None:  # ROI masks, for methods that edit outside the ROI
        t["mask"] = torch.from_numpy(table.masks)
    return t


@dataclass(kw_only=True)
class Context:
    """The runner's ``RunContext`` (``methods/base.py`` documents every member)."""

    train: Tensors
    val: Tensors
    info: TaskInfo
    layout: RunLayout
    device: torch.device
    seed: int
    batch_size: int
    eval_batch_size: int = 512
    bf16: bool = False
    # training images that re-estimate batch-norm statistics after every epoch (0: off)
    precise_bn: int = 0
    holdout: Tensors | None = None
    # the split `target_unlabelled` (domain shift), for methods that adapt to the target domain
    unlabelled: Tensors | None = None
    samples_seen: int = 0
    # the data pipeline (experiment/loader.py): DataLoader workers, training-time augmentation
    # (``data.augment.augment_spec``; {}: off), pinned memory and channels-last (CUDA)
    num_workers: int = 0
    augment: dict[str, dict[str, float]] = field(default_factory=dict)
    pin_memory: bool = False
    channels_last: bool = False
    # called after every training step of ``fit`` (the runner's progress bar)
    on_step: Callable[[], None] | None = field(default=None, repr=False)
    # ``progress(stage, done, total)`` for a method's long steps outside ``fit`` (fitting a
    # generator, generating images): the runner shows one bar per stage; None: no display
    progress: Callable[[str, int, int], None] | None = field(default=None, repr=False)
    train_seconds: float = 0.0

    @property
    def run_dir(self) -> Path:
        return self.layout.dir

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def batches(
        self,
        tensors: Tensors,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensors]:
        """One epoch of device batches; ``weights`` (N,) draws N rows with replacement."""
        plan = self.plan(len(tensors["y"]), shuffle, weights, batch_size, generator)
        feed = self._feed(tensors)
        if feed is not None:
            yield from feed.epoch(plan)
            return
        for idx in plan:
            yield self.to_device(tensors, idx)

    def plan(
        self,
        n: int,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """The row numbers of each batch of one epoch over ``n`` rows (``batches``' order)."""
        bs = batch_size or self.batch_size
        if weights is not None:
            order = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
        elif shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        cuts = [order[start : start + bs] for start in range(0, n, bs)]
        # batch norm cannot train on one example
        return [idx for idx in cuts if not (shuffle and len(idx) < 2)]

    def _feed(self, tensors: Tensors, train: bool = False, seed: int = 0) -> Feed | None:
        """The DataLoader feed of ``tensors`` (``experiment/loader.py``), augmenting when
        ``train``; None where batches are gathered in this process (no workers, no pinning,
        no augmentation: the in-memory path)."""
        transform = build_transform(self.augment, self.info.image_size) if train else None
        if not (self.num_workers or self.pin_memory or transform is not None):
            return None
        return Feed(tensors, self.move, self.num_workers, self.pin_memory, transform, seed, train)

    def to_device(self, tensors: Tensors, idx: torch.Tensor) -> Tensors:
        # ROI masks stay in the CPU tables (context.train["mask"]); batches carry only what
        # update() needs, so the loop costs no more than a bare one.
        batch = {k: v[idx] for k, v in tensors.items() if k != "mask"}
        rows_read(batch["x"].nbytes)  # drops the image cache's pages now and then
        return self.move(batch)

    def move(self, batch: Tensors) -> Tensors:
        """A gathered CPU batch on the device, ``x`` as float in [0, 1] (uint8 is scaled;
        augmented batches already are), channels-last where set."""
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if k != "x"}
        x = batch["x"].to(self.device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out["x"] = x
        return out

    @staticmethod
    def sampling_weights(method: Method, tensors: Tensors) -> torch.Tensor | None:
        """Per-row draw weights of the method's ``sampling`` (None: shuffled epochs)."""
        if method.sampling == "group_balanced":
            g = tensors["g"]
            counts = torch.bincount(g).double()
            return 1.0 / counts[g]
        return None

    def fit(
        self,
        method: Method,
        epochs: int,
        tensors: Tensors | None = None,
        on_epoch: EpochCallback | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """Train ``method`` for ``epochs`` on ``tensors`` (default: ``train``) with its sampling.

        ``on_epoch(epoch, mean_losses)`` runs after every epoch (the runner's model selection);
        ``seed`` seeds the batch order (default: a stream apart from the main run's, for helper
        models). Returns the last epoch's mean losses.
        """
        gen = torch.Generator().manual_seed(self.seed + HELPER_STREAM if seed is None else seed)
        return self.fit_from(method, epochs, tensors, on_epoch, generator=gen)

    def fit_from(
        self,
        method: Method,
        epochs: int,
        tensors: Tensors | None = None,
        on_epoch: EpochCallback | None = None,
        *,
        generator: torch.Generator,
        start_epoch: int = 0,
    ) -> dict[str, float]:
        """``fit`` with the batch order's ``generator`` given, from epoch ``start_epoch``: the
        runner continues a run from an epoch checkpoint with it (``train_one(resume=True)``);
        not part of the ``RunContext`` protocol."""
        tensors = self.train if tensors is None else tensors
        gen = generator
        weights = self.sampling_weights(method, tensors)
        feed = self._feed(tensors, train=True, seed=int(gen.initial_seed()))
        if feed is not None:
            feed.epochs = start_epoch  # augmentation seeds follow the epoch number
        means: dict[str, float] = {}
        for epoch in range(start_epoch, epochs):
            method.train()
            sums: dict[str, float] = {}
            n_batches = 0
            t_epoch = time.perf_counter()
            if feed is None:
                epoch_batches = self.batches(tensors, weights=weights, generator=gen)
            else:
                epoch_batches = feed.epoch(self.plan(len(tensors["y"]), True, weights, None, gen))
            for batch in epoch_batches:
                with self.autocast():
                    losses = method.update(batch)
                self.samples_seen += len(batch["y"])
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_batches += 1
                if self.on_step is not None:
                    self.on_step()
            self.train_seconds += time.perf_counter() - t_epoch
            if self.precise_bn:
                self.recalibrate_bn(method, tensors, weights)
            means = {k: v / max(n_batches, 1) for k, v in sums.items()}
            if on_epoch is not None:
                on_epoch(epoch, means)
        return means

    @torch.no_grad()
    def recalibrate_bn(
        self, method: Method, tensors: Tensors, weights: torch.Tensor | None = None
    ) -> int:
        """Re-estimate every batch-norm layer's running statistics with the current weights on
        ``precise_bn`` training images ("precise BN", Wu & Johnson 2021; pycls): the running
        averages kept during training mix many past weights and, after short or fast-moving
        training, make the eval-mode model a different (sometimes constant) function.

        Only the batch-norm layers run in train mode (dropout stays off); the rows are a fixed
        seeded subset, drawn from a stream of their own so training's batches do not change,
        and with the method's sampling ``weights`` where it has them (a group-balanced method
        is normalised with the statistics of the balanced batches it was trained on).
        Returns the number of layers re-estimated (0: the model has none; nothing is run).
        """
        norms = [m for m in method.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms or not self.precise_bn:
            return 0
        n = len(tensors["y"])
        gen = torch.Generator().manual_seed(self.seed + PRECISE_BN_STREAM)
        if weights is None:
            rows = torch.randperm(n, generator=gen)[: self.precise_bn]
        else:
            k = min(self.precise_bn, n)
            rows = torch.multinomial(weights.double(), k, replacement=True, generator=gen)
        part = {"x": tensors["x"][rows], "y": tensors["y"][rows]}
        modes = [(m, m.training) for m in method.modules()]
        momenta = [m.momentum for m in norms]
        method.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
            m.train()
        try:
            for batch in self.batches(part, shuffle=False, batch_size=self.batch_size):
                if len(batch["y"]) < 2:
                    continue
                with self.autocast():
                    method.predict(batch["x"])
        finally:
            for m, training in modes:
                m.train(training)
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
        return len(norms)

    @torch.no_grad()
    def predict(self, method: Method, tensors: Tensors) -> torch.Tensor:
        """Logits (N, C) on CPU, in eval mode (the method's mode is restored)."""
        was_training = method.training
        method.eval()
        out = []
        for batch in self.batches(tensors, shuffle=False, batch_size=self.eval_batch_size):
            with self.autocast():
                out.append(method.predict(batch["x"]).float().cpu())
        method.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.info.num_classes)

    @torch.no_grad()
    def features(self, method: Method, tensors: Tensors) -> dict[str, np.ndarray]:
        """Named feature blocks of ``method.features`` for every row, as numpy arrays."""
        method.eval()
        parts: dict[str, list[np.ndarray]] = {}
        for batch in self.batches(tensors, shuffle=False, batch_size=self.eval_batch_size):
            with self.autocast():
                for k, v in method.features(batch["x"]).items():
                    parts.setdefault(k, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    @torch.no_grad()
    def predict_features(
        self, method: Method, tensors: Tensors
    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """``predict`` and ``features`` of every row in one pass over the data
        (``Method.predict_with_features``); the method's mode is restored."""
        was_training = method.training
        method.eval()
        logits: list[torch.Tensor] = []
        parts: dict[str, list[np.ndarray]] = {}
        for batch in self.batches(tensors, shuffle=False, batch_size=self.eval_batch_size):
            with self.autocast():
                out, blocks = method.predict_with_features(batch["x"])
            logits.append(out.float().cpu())
            for k, v in blocks.items():
                parts.setdefault(k, []).append(v.float().cpu().numpy())
        method.train(was_training)
        empty = torch.empty(0, self.info.num_classes)
        return (torch.cat(logits) if logits else empty), {
            k: np.concatenate(v) for k, v in parts.items()
        }
