"""Runner overhead: ERM training throughput of the shared runner against a bare PyTorch loop.

Same model (small-cnn), data (synth-cxr), batch size, optimiser and number of epochs; the two are
interleaved and repeated, and the median ratio is reported (the machine is noisy). Also times the
generation of the embedded datasets. Usage:

    .venv/bin/python benchmarks/throughput.py [--epochs 3] [--repeats 3] [--size 6000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from shortcutlab.data.sources import make_synthetic
from shortcutlab.data.synthetic import SYNTHETIC
from shortcutlab.experiment.config import ExperimentConfig
from shortcutlab.experiment.runner import train_one
from shortcutlab.models import build_model


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=6000)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

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
    for name in SYNTHETIC:
        rates = [generation_rate(name) for _ in range(3)]
        print(
            f"generation {name}: median {statistics.median(rates):.0f} images/s (2,000 images, 64x64)"
        )


if __name__ == "__main__":
    main()
