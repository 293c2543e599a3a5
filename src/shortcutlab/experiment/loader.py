"""The DataLoader path of ``Context.batches`` / ``Context.fit`` and the CUDA precision settings.

Batches are planned in the training process exactly as on the in-memory path (the same
``randperm`` / ``multinomial`` draws from the same generator, the same batch cuts), and each
planned batch, a tensor of row numbers, is one item of the DataLoader: a worker gathers the
rows (``x[idx]``: a small copy, paged in from the memory-mapped image cache), augments them for
training (``data/augment.py``) and hands back the batch dict. So with augmentation off the
batches are the same rows in the same order with any number of workers, and with it on they
are the same with 0, 1 or 2 workers (each batch's random state is seeded from the run seed).

Used when ``train.num_workers > 0``, ``train.augment`` is set or memory is pinned (CUDA); else
``Context`` gathers in its own process as before (the fast path for embedded data).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from shortcutlab.data.augment import augment_batch, batch_seed
from shortcutlab.data.cache import rows_read

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DeviceSettings:
    """What the device changes about a run: bf16 autocast, channels-last memory format for the
    model and the batches, pinned host memory for the batches."""

    autocast_bf16: bool
    channels_last: bool
    pin_memory: bool


def device_settings(device: torch.device, amp: bool, bf16: bool) -> DeviceSettings:
    """``train.amp`` on CUDA is bf16 autocast (no gradient scaler needed) plus channels-last;
    ``train.bf16`` turns on bf16 autocast on any device (on CPU it alone does)."""
    cuda = device.type == "cuda"
    return DeviceSettings(
        autocast_bf16=bool(bf16 or (amp and cuda)),
        channels_last=bool(amp and cuda),
        pin_memory=cuda,
    )


class PlannedBatches(Sampler):
    """The current epoch's planned batches, ``(row numbers, augmentation seed)`` each; the
    training process replaces ``items`` before every epoch (persistent workers keep running)."""

    def __init__(self) -> None:
        self.items: list[tuple[torch.Tensor, int]] = []

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class RowBatches(Dataset):
    """Item ``(idx, seed)``: the rows ``idx`` of ``tensors`` (ROI masks left out), ``x`` as
    uint8, or as float in [0, 1] augmented by ``transform`` with ``seed`` when given."""

    def __init__(self, tensors: Tensors, transform=None) -> None:
        self.tensors = {k: v for k, v in tensors.items() if k != "mask"}
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tensors["y"])

    def __getitem__(self, item: tuple[torch.Tensor, int]) -> Tensors:
        idx, seed = item
        batch = {k: v[idx] for k, v in self.tensors.items()}
        rows_read(batch["x"].nbytes)  # this worker's mapped cache pages, dropped now and then
        if self.transform is not None:
            batch["x"] = augment_batch(self.transform, batch["x"], seed)
        return batch


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # workers gather and augment; the training process computes


class Feed:
    """Device batches of ``tensors`` through a DataLoader, one ``epoch(plan)`` at a time.

    ``transform`` (MONAI, ``data/augment.py``) augments every batch, seeded by ``seed``, the
    feed's epoch count and the batch number. Workers (``workers > 0``) read the tensors (the
    memory-mapped cache) in place; ``persistent`` keeps them for every epoch of the feed (a
    training run's), else they are forked for one epoch (an evaluation pass).
    """

    def __init__(
        self,
        tensors: Tensors,
        to_device,
        workers: int,
        pin: bool,
        transform=None,
        seed: int = 0,
        persistent: bool = False,
    ) -> None:
        self.plan = PlannedBatches()
        self.to_device = to_device
        self.seed = seed
        self.epochs = 0
        self.augment = transform is not None
        fork = workers > 0 and "fork" in multiprocessing.get_all_start_methods()
        self.loader = DataLoader(
            RowBatches(tensors, transform),
            batch_size=None,  # each item is a whole batch
            sampler=self.plan,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=persistent and workers > 0,
            worker_init_fn=_one_thread if workers > 0 else None,
            # fork: the workers share the tensors (and the image cache's pages) instead of
            # receiving a pickled copy, which spawn / forkserver would send
            multiprocessing_context="fork" if fork else None,
        )

    def epoch(self, plan: list[torch.Tensor]) -> Iterator[Tensors]:
        self.plan.items = [
            (idx, batch_seed(self.seed, self.epochs, b) if self.augment else 0)
            for b, idx in enumerate(plan)
        ]
        self.epochs += 1
        for batch in self.loader:
            yield self.to_device(batch)
