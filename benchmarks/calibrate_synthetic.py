"""Calibrate the synthetic datasets' default strengths: does ERM take the shortcut?

For one dataset and one attribute z: train a small CNN with plain ERM and with group-balanced
sampling on ``--n-train`` images where P(z = y) = ``--corr``, and report accuracy on val (same
correlation) and inv (P(z = y) = 1 - corr). Also reports how well the task is learned when
nothing is correlated (``--uncorrelated``). A bare PyTorch loop (AdamW, lr 1e-3, batch 128), so
the numbers depend on nothing but the renderer.

    PYTHONPATH=src python benchmarks/calibrate_synthetic.py synth-cxr site --epochs 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from shortcutlab.data.synthetic import SYNTHETIC, render_synthetic
from shortcutlab.models import build_model


def correlated_factors(name: str, attr: str, n: int, p_same: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = {a: rng.integers(0, 2, n) for a in SYNTHETIC[name].attributes}
    table["y"] = rng.integers(0, 2, n)
    same = rng.random(n) < p_same
    table[attr] = np.where(same, table["y"], 1 - table["y"])
    return pd.DataFrame(table)


def tensors(name, factors, seed, strengths):
    images, _ = render_synthetic(name, factors, seed, 64, strengths)
    return torch.from_numpy(images).float() / 255, torch.as_tensor(factors["y"].to_numpy())


def train(name, x, y, groups, epochs, balanced, seed, evals):
    torch.manual_seed(seed)
    model = build_model("small-cnn", x.shape[1], 2, image_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n, batch = len(x), 128
    weights = 1.0 / torch.bincount(groups).float()[groups]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        if balanced:
            order = torch.multinomial(weights, n, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, generator=gen)
        model.train()
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    out = {}
    with torch.no_grad():
        for split, (xe, ye) in evals.items():
            pred = torch.cat([model(xe[i : i + 500]).argmax(1) for i in range(0, len(xe), 500)])
            out[split] = (pred == ye).float().mean().item() * 100
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=list(SYNTHETIC))
    ap.add_argument("attribute")
    ap.add_argument("--n-train", type=int, default=3600)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--corr", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strength", action="append", default=[], help="factor=value, repeatable")
    ap.add_argument("--uncorrelated", action="store_true", help="also train with no correlation")
    ap.add_argument("--skip-balanced", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    strengths = {k: float(v) for k, v in (s.split("=") for s in args.strength)}
    name, attr = args.dataset, args.attribute
    train_f = correlated_factors(name, attr, args.n_train, args.corr, args.seed)
    x, y = tensors(name, train_f, args.seed, strengths)
    g = torch.as_tensor(train_f["y"].to_numpy() * 2 + train_f[attr].to_numpy())
    evals = {
        split: tensors(name, correlated_factors(name, attr, 1000, p, 100 + k), 100 + k, strengths)
        for k, (split, p) in enumerate((("val", args.corr), ("inv", 1 - args.corr)))
    }
    methods = [("erm", False)] + ([] if args.skip_balanced else [("balanced", True)])
    for label, balanced in methods:
        t = time.perf_counter()
        acc = train(name, x, y, g, args.epochs, balanced, args.seed, evals)
        print(
            f"{name} z={attr} corr={args.corr} {label:8s} val {acc['val']:.1f} "
            f"inv {acc['inv']:.1f}  ({time.perf_counter() - t:.0f}s)",
            flush=True,
        )
    if args.uncorrelated:
        f0 = correlated_factors(name, attr, 3000, 0.5, args.seed + 7)
        x0, y0 = tensors(name, f0, args.seed + 7, strengths)
        test = {"test": tensors(name, correlated_factors(name, attr, 1000, 0.5, 99), 99, strengths)}
        for ep in (3, 5):
            acc = train(name, x0, y0, torch.zeros(len(x0), dtype=torch.long), ep, False, 0, test)
            print(f"{name} uncorrelated {ep} epochs on 3000: test {acc['test']:.1f}", flush=True)


if __name__ == "__main__":
    main()
