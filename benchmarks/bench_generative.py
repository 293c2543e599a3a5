"""Throughput and memory of the default 64x64 generative model (see docs/generative.md).

PYTHONPATH=src python benchmarks/bench_generative.py [--threads 1] [--latent/--pixel]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from shortcutlab.generative import ConditionalDiffusion, inpaint, train_autoencoder, train_diffusion


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pixel", action="store_true", help="pixel space instead of 16x16x4 latents"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--images", type=int, default=32, help="images to inpaint")
    parser.add_argument("--sample-steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ConditionalDiffusion.create(64, 3, {"y": 2, "domain": 2}, latent=not args.pixel)
    images = torch.randint(0, 256, (256, 3, 64, 64), dtype=torch.uint8)
    n_unet = sum(p.numel() for p in model.unet.parameters()) / 1e6
    print(
        f"unet {n_unet:.2f}M params, sample shape {model.sample_shape}, load {open('/proc/loadavg').read().split()[0]}"
    )
    if model.vae is not None:
        t0 = time.time()
        train_autoencoder(model, images, steps=args.steps, batch_size=32)
        print(f"autoencoder train: {args.steps / (time.time() - t0):.2f} steps/s (batch 32)")
    t0 = time.time()
    train_diffusion(model, images, {"y": 0, "domain": 0}, steps=args.steps, batch_size=32)
    print(
        f"diffusion train: {args.steps / (time.time() - t0):.2f} steps/s (batch 32, incl. encoding)"
    )
    roi = torch.zeros(args.images, 64, 64, dtype=torch.bool)
    roi[:, 16:48, 16:48] = True
    t0 = time.time()
    inpaint(
        model,
        images[: args.images],
        roi,
        {"y": 1, "domain": 1},
        steps=args.sample_steps,
        guidance=7.5,
    )
    dt = time.time() - t0
    print(f"inpaint {args.sample_steps} DDIM steps, CFG: {args.images / dt:.2f} images/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
