"""Cost of MIMM-X: seconds per encoder update of ``mimmx`` against ``erm``.

One ``update`` of mimmx is one encoder/heads step plus ``N_B - 1`` steps of the statistics network
over all B x B pairs, so its cost grows with B^2 * mine_hidden^2 * N_B. The ``N_B 1`` variants
have no critic steps: their excess over erm is the MI term (and the heads) in the encoder step,
MINE alone; the rest of a full update is the alternation. Same model (``--backbone``),
random 64x64 inputs, batch size and threads for every variant; updates are timed after warm-up,
the variants interleaved and repeated, the median reported. Usage:

    .venv/bin/python benchmarks/mimmx_cost.py [--batch-size 150] [--updates 3] [--threads 1]
        [--backbone small-cnn-gn] [--penalties]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from shortcutlab.methods import TaskInfo, get_method
from shortcutlab.models import build_model

VARIANTS: dict[str, tuple[str, dict]] = {
    "erm": ("erm", {}),
    # N_B 1: the encoder step with the MI term and its heads, no critic steps (MINE alone)
    "mimmx N_B 1, hidden 400": ("mimmx", {"n_b": 1}),
    "mimmx (paper: N_B 6, hidden 400)": ("mimmx", {}),
    "mimmx N_B 1, hidden 128": ("mimmx", {"mine_hidden": 128, "n_b": 1}),
    "mimmx hidden 128": ("mimmx", {"mine_hidden": 128}),
    "mimmx N_B 3, hidden 128": ("mimmx", {"mine_hidden": 128, "n_b": 3}),
    "mimmx pairwise": ("mimmx", {"caw_mode": "pairwise"}),
}
# The bounded penalties (docs/methods.md, "Bounded dependence penalties"), each at the configs'
# width 128 and N_B 6; --penalties times these instead of the variants above.
PENALTIES: dict[str, tuple[str, dict]] = {
    "erm": ("erm", {}),
    "mimmx MINE (DV)": ("mimmx", {"mine_hidden": 128}),
    "mimmx InfoNCE": ("mimmx", {"mine_hidden": 128, "critic": "infonce"}),
    "mimmx spectral-norm critic": ("mimmx", {"mine_hidden": 128, "critic": "spectral"}),
    "mimmx gradient-penalty critic": (
        "mimmx",
        {"mine_hidden": 128, "critic": "gradient_penalty"},
    ),
    "mimmx stochastic encoder": ("mimmx", {"mine_hidden": 128, "stochastic_sigma": 0.5}),
    "zadv (gradient reversal, n_b 2)": ("zadv", {}),
    "dcor": ("dcor", {}),
}


def build(name: str, params: dict, info: TaskInfo, backbone: str, seed: int = 0):
    cls = get_method(name)
    hp = {**cls.hparam_defaults(), **params}
    dim = cls.encoder_dim(info, hp) or 128
    torch.manual_seed(seed)
    model = build_model(backbone, info.in_channels, info.num_classes, info.image_size, dim)
    return cls(model, info, hp)


def seconds_per_update(method, batch: dict[str, torch.Tensor], updates: int) -> float:
    method.train()
    method.update(batch)  # warm-up (optimiser state, allocations)
    start = time.perf_counter()
    for _ in range(updates):
        method.update(batch)
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=150, help="the paper's brain-MRI batch")
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", default="small-cnn-gn", help="the MIMM-X configs' encoder")
    parser.add_argument(
        "--penalties", action="store_true", help="time the bounded penalties instead"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    info = TaskInfo(2, ["sex", "dataset"], [2, 2], 1, args.image_size, epochs=10)
    gen = torch.Generator().manual_seed(0)
    b = args.batch_size
    batch = {
        "x": torch.rand(b, 1, args.image_size, args.image_size, generator=gen),
        "y": torch.randint(0, 2, (b,), generator=gen),
        "z": torch.randint(0, 2, (b, 2), generator=gen),
        "g": torch.randint(0, 8, (b,), generator=gen),
        "idx": torch.arange(b),
    }
    methods = {
        label: build(name, params, info, args.backbone)
        for label, (name, params) in (PENALTIES if args.penalties else VARIANTS).items()
    }
    times: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(args.repeats):
        for label, method in methods.items():
            times[label].append(seconds_per_update(method, batch, args.updates))
    erm = statistics.median(times["erm"])
    out = {
        label: {"seconds_per_update": statistics.median(t), "x_erm": statistics.median(t) / erm}
        for label, t in times.items()
    }
    report = {"batch_size": b, "threads": args.threads, "backbone": args.backbone, "results": out}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
