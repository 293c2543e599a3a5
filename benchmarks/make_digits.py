"""A MorphoMNIST-shaped single-confounder data set from scikit-learn's bundled digits.

The shape of MIMM's MorphoMNIST experiment (Fay et al. 2023; the official
``Create_Dataset_MorphoMNIST.py``): a digit task, one morphological confounder, every (y, z)
cell first equalised, then the training and val splits drawn at ``P(z = y) = ratio`` (0.9), an
``inv`` split with the pairing swapped (``P(z = y) = 1 - ratio``) and a balanced ``bal`` split
(0.5). Here: ``y`` = digit 0-4 (0) or 5-9 (1), ``thickness`` = thin (0) or thick (1) strokes
(grey dilation by ``--dilate`` pixels after upsampling the 8x8 digits to ``--size``), a shift of
up to 2 pixels and strong pixel noise (``--noise``), which slows the digit task down while the
thickness (the amount of ink) stays easy to read: the shortcut of the MorphoMNIST experiment. The held-out splits use other base digits than train;
each base digit is drawn several times with its own shift, noise and cell.

Nothing is downloaded (``sklearn.datasets.load_digits`` ships with scikit-learn). Writes an npz
in the MedMNIST layout that ``dataset: {name: npz, path: ..., attributes: [thickness]}`` reads
(``configs/mimm-digits.yaml``):

    PYTHONPATH=src .venv/bin/python benchmarks/make_digits.py --out runs/digits/digits.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits

SPLITS = {"train": (0.60, 4000), "val": (0.15, 1000), "inv": (0.125, 1000), "bal": (0.125, 1000)}


def render(
    base: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    size: int,
    dilate: int,
    noise: float,
) -> np.ndarray:
    """uint8 (N, size, size): each 8x8 digit upsampled, thickened where ``z == 1``, shifted."""
    out = np.empty((len(base), size, size), np.uint8)
    scale = size / 8
    for i, (img, zi) in enumerate(zip(base, z, strict=True)):
        up = ndimage.zoom(img / 16.0, scale, order=1)
        up = np.pad(up, 3)
        if zi:
            up = ndimage.grey_dilation(up, size=(dilate + 1, dilate + 1))
        else:
            up = ndimage.grey_erosion(up, size=(2, 2)) * 0.5 + up * 0.5
        dx, dy = rng.integers(-2, 3, 2)
        up = np.roll(up, (dy, dx), (0, 1))[3 : 3 + size, 3 : 3 + size]
        up = np.clip(up + rng.normal(0, noise, up.shape), 0, 1)
        out[i] = (up * 255).round().astype(np.uint8)
    return out


def make(
    size: int = 32, ratio: float = 0.9, dilate: int = 3, noise: float = 1.0, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    bounds = np.cumsum([0] + [int(f * len(order)) for f, _ in SPLITS.values()])
    p_same = {"train": ratio, "val": ratio, "inv": 1 - ratio, "bal": 0.5}
    arrays = {}
    for (split, (_, n)), lo, hi in zip(SPLITS.items(), bounds[:-1], bounds[1:], strict=True):
        pool = order[lo:hi]
        labels = (digits.target[pool] >= 5).astype(int)
        # equal y classes, then z from the split's ratio: exact cell counts
        y = np.repeat([0, 1], n // 2)
        n_same = round(p_same[split] * (n // 2))
        same = np.concatenate([np.ones(n_same, bool), np.zeros(n // 2 - n_same, bool)])
        z = np.where(np.concatenate([same, same]), y, 1 - y)
        base = np.array([rng.choice(pool[labels == yi]) for yi in y])
        perm = rng.permutation(n)
        y, z, base = y[perm], z[perm], base[perm]
        arrays[f"{split}_images"] = render(digits.images[base], z, rng, size, dilate, noise)
        arrays[f"{split}_labels"] = y
        arrays[f"{split}_thickness"] = z
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/digits/digits.npz")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ratio", type=float, default=0.9)
    parser.add_argument("--dilate", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.0, help="pixel noise (std, 0-1 scale)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    arrays = make(args.size, args.ratio, args.dilate, args.noise, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    for split in SPLITS:
        y, z = arrays[f"{split}_labels"], arrays[f"{split}_thickness"]
        print(split, len(y), f"P(z = y) = {(y == z).mean():.3f}")


if __name__ == "__main__":
    main()
