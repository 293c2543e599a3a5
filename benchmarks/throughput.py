"""Runner overhead: ERM training throughput of the shared runner against a bare PyTorch loop.

Same model (small-cnn), data (synth-cxr), batch size, optimiser and number of epochs; the two are
interleaved and repeated, and the median ratio is reported (the machine is noisy). Also times the
generation of the embedded datasets, the data loading of the training loop (images/s of
batches gathered from a memory-mapped image cache at 128 px, with 0, 1 and 2 DataLoader
workers, without and with ``train.augment: standard``) and, where CUDA exists, densenet121
training at 224 px with and without ``train.amp`` (bf16 autocast + channels-last). Usage:

    .venv/bin/python benchmarks/throughput.py [--epochs 3] [--repeats 3] [--size 6000]
    .venv/bin/python benchmarks/throughput.py --only loading   # or: runner, generation, cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shortcutlab.data.augment import augment_spec
from shortcutlab.data.cache import track
from shortcutlab.data.sources import make_synthetic
from shortcutlab.data.synthetic import SYNTHETIC
from shortcutlab.experiment.config import ExperimentConfig
from shortcutlab.experiment.context import Context
from shortcutlab.experiment.loader import device_settings
from shortcutlab.experiment.runner import train_one
from shortcutlab.methods.base import TaskInfo
from shortcutlab.models import build_model
from shortcutlab.store.layout import RunLayout


def bare_loop(table, epochs: int, batch_size: int, lr: float, seed: int) -> float:
    """Images per second of the plainest loop over the same in-memory uint8 tensors."""
    train = table.split("train").tensors()
    torch.manual_seed(seed)
    model = build_model("small-cnn", table.in_channels, 2, table.image_size, 128)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    x_all, y_all = train["x"], train["y"]
    n = len(y_all)
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:
                continue
            x = x_all[idx].float().div_(255.0)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
    return seen / (time.perf_counter() - start)


def runner_loop(table, epochs: int, batch_size: int, lr: float, seed: int) -> tuple[float, float]:
    """(training images/s, images/s including the per-epoch val evaluation) of the runner."""
    cfg = ExperimentConfig.model_validate(
        {
            "methods": ["erm"],
            "seeds": [seed],
            "bootstrap": 0,
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "erm"
        t0 = time.perf_counter()
        train_one(table, cfg, cfg.methods[0], seed, run_dir)
        total = time.perf_counter() - t0
        done = json.loads((run_dir / "done.json").read_text())
    samples = done["compute"]["samples"]
    return samples / done["compute"]["train_seconds"], samples / total


def generation_rate(name: str, n: int = 2000) -> float:
    t0 = time.perf_counter()
    make_synthetic(name, n, None, 0.9, seed=123, use_cache=False)
    return n / (time.perf_counter() - t0)


def loading_context(n: int, image_size: int, tmp: Path, **kw) -> tuple[Context, dict]:
    """A context over ``n`` random uint8 images memory-mapped from a cache file, as a CSV data
    set's are (``data/cache.py``)."""
    path = tmp / f"images-{n}.npy"
    if not path.exists():
        x = np.lib.format.open_memmap(path, "w+", np.uint8, (n, 1, image_size, image_size))
        rng = np.random.default_rng(0)
        for start in range(0, n, 1000):
            x[start : start + 1000] = rng.integers(0, 256, x[start : start + 1000].shape)
        x.flush()
        del x
    images = np.load(path, mmap_mode="c")
    track(images)  # as the cache's own arrays: mapped pages are dropped as batches are read
    x = torch.from_numpy(images)
    tensors = {"x": x, "y": torch.arange(n) % 2, "z": torch.zeros(n, 1, dtype=torch.long)}
    tensors["g"], tensors["idx"] = tensors["y"].clone(), torch.arange(n)
    info = TaskInfo(2, ["z"], [2], 1, image_size)
    ctx = Context(
        train=tensors,
        val=tensors,
        info=info,
        layout=RunLayout.single(tmp / "run", "erm", 0),
        device=torch.device("cpu"),
        seed=0,
        batch_size=128,
        **kw,
    )
    return ctx, tensors


def loading_rate(n: int, workers: int, augment: str, tmp: Path) -> float:
    """Images/s of one training epoch's batches (gather, augment, to device), no model step."""
    ctx, tensors = loading_context(n, 128, tmp, num_workers=workers, augment=augment_spec(augment))
    gen = torch.Generator().manual_seed(0)
    feed = ctx._feed(tensors, train=True)
    for _ in feed.epoch(ctx.plan(256, True, None, None, gen)) if feed else ():
        pass  # start the workers and import what they need before the clock
    t0 = time.perf_counter()
    seen = 0
    plan = ctx.plan(n, True, None, None, gen)
    batches = feed.epoch(plan) if feed else (ctx.to_device(tensors, idx) for idx in plan)
    for batch in batches:
        seen += len(batch["y"])
    return seen / (time.perf_counter() - t0)


def report_loading(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for augment, n in (("none", 20_000), ("standard", 1_024)):
            for workers in (0, 1, 2):
                rates = [loading_rate(n, workers, augment, Path(tmp)) for _ in range(repeats)]
                print(
                    f"data loading, augment {augment}, {workers} workers: median "
                    f"{statistics.median(rates):.0f} images/s ({n} images, 128 px, batch 128)"
                )


def cuda_densenet(batch_size: int = 64, steps: int = 20) -> None:
    """densenet121 training images/s at 224 px on CUDA, with and without ``train.amp``."""
    if not torch.cuda.is_available():
        print("densenet121 on CUDA: skipped (no CUDA device on this machine)")
        return
    device = torch.device("cuda")
    for amp in (False, True):
        settings = device_settings(device, amp, bf16=False)
        torch.manual_seed(0)
        model = build_model("densenet121", 3, 2, 224, 128).to(device)
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.rand(batch_size, 3, 224, 224, device=device)
        if settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (batch_size,), device=device)
        for step in range(steps + 5):
            if step == 5:  # warm-up done (cuDNN autotuning, allocator)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast("cuda", torch.bfloat16, enabled=settings.autocast_bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        rate = steps * batch_size / (time.perf_counter() - t0)
        name = torch.cuda.get_device_name(device)
        print(f"densenet121 224 px on {name}, amp {amp}: {rate:.0f} training images/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--only", choices=["runner", "generation", "loading", "cuda"], default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = [args.only] if args.only else ["runner", "generation", "loading", "cuda"]
    if "runner" in parts:
        report_runner(args)
    if "generation" in parts:
        for name in SYNTHETIC:
            rates = [generation_rate(name) for _ in range(3)]
            print(
                f"generation {name}: median {statistics.median(rates):.0f} images/s "
                "(2,000 images, 64x64)"
            )
    if "loading" in parts:
        report_loading(args.repeats)
    if "cuda" in parts:
        cuda_densenet()


def report_runner(args: argparse.Namespace) -> None:
    table = make_synthetic("synth-cxr", args.size, ["site"], 0.9)
    bare, run, run_total = [], [], []
    for r in range(args.repeats):
        bare.append(bare_loop(table, args.epochs, args.batch_size, 1e-3, r))
        a, b = runner_loop(table, args.epochs, args.batch_size, 1e-3, r)
        run.append(a)
        run_total.append(b)
        print(
            f"repeat {r}: bare {bare[-1]:.0f} img/s, runner {a:.0f} img/s "
            f"({b:.0f} img/s with per-epoch val evaluation)"
        )
    ratios = [a / b for a, b in zip(run, bare)]
    print(f"median bare loop      : {statistics.median(bare):.0f} img/s")
    print(f"median runner (train) : {statistics.median(run):.0f} img/s")
    print(f"median runner (+eval) : {statistics.median(run_total):.0f} img/s")
    print(f"median ratio runner/bare (train): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
