"""Peak memory of a run on a large CSV data set: the disk-backed image cache at work.

Writes (once) a CSV + PNG data set of ``--n`` grayscale images at ``--size`` px into FOLDER
(y: a bright blob in the centre, site: a corner marker, a given ``split`` column with the rows
in random order), then runs ``shortcutlab run`` on it (erm, 1 epoch, ``train.num_threads=1``)
under ``/usr/bin/time -v`` with ``SHORTCUTLAB_CACHE`` in FOLDER/cache, and reports the peak
resident memory, the wall time and the size of the image cache on disk. ``--warm`` runs a second
time, on the cache the first run wrote (no decoding). Usage:

    nice python benchmarks/big_csv_rss.py FOLDER [--n 50000] [--size 128] [--warm]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def _write_one(args: tuple[str, int, int, int, int]) -> None:
    from PIL import Image

    path, y, z, size, seed = args
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 60.0) + rng.normal(0, 4, (size, size))
    c, r = size // 2, size // 8
    if y:
        img[c - r : c + r, c - r : c + r] += 100
    if z:
        img[: size // 10, : size // 10] = 255
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


def write_dataset(root: Path, n: int, size: int, workers: int) -> None:
    """FOLDER/images/<i>.png and FOLDER/metadata.csv (skipped when the CSV exists)."""
    if (root / "metadata.csv").is_file():
        print(f"data set: {root} exists, reused")
        return
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    y = rng.integers(0, 2, n)
    split = rng.choice(["train", "val", "test"], n, p=[0.6, 0.2, 0.2])
    z = np.where(rng.random(n) < np.where(split == "test", 0.5, 0.9), y, 1 - y)
    jobs = [(str(root / "images" / f"{i}.png"), int(y[i]), int(z[i]), size, i) for i in range(n)]
    t = time.perf_counter()
    with Pool(workers) as pool:
        pool.map(_write_one, jobs, chunksize=500)
    meta = pd.DataFrame(
        {"path": [f"images/{i}.png" for i in range(n)], "y": y, "site": z, "split": split}
    )
    meta.to_csv(root / "metadata.csv", index=False)
    print(f"data set: wrote {n} PNGs at {size} px in {time.perf_counter() - t:.0f} s")


def run_once(root: Path, size: int, out: Path, threads: int) -> dict[str, float]:
    """One ``shortcutlab run`` under ``/usr/bin/time -v``: peak RSS (GiB) and wall seconds."""
    cfg = {
        "dataset": {"name": "csv", "root": str(root), "attributes": ["site"], "image_size": size},
        "methods": ["erm"],
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 128, "num_threads": threads},
    }
    cfg_path = root / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("shortcutlab")
    env = {**os.environ, "SHORTCUTLAB_CACHE": str(root / "cache")}
    cmd = ["/usr/bin/time", "-v", str(exe), "run", str(cfg_path), "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        raise SystemExit(f"the run failed ({proc.returncode})")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", proc.stderr).group(1)
    secs = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.split(":"))))
    print(proc.stdout.strip())
    return {"peak_gib": peak / 2**20, "peak_kib": peak, "wall_s": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="processes writing the PNGs")
    ap.add_argument("--threads", type=int, default=1, help="train.num_threads of the run")
    ap.add_argument("--warm", action="store_true", help="a second run on the warm cache")
    args = ap.parse_args()
    root = args.folder.resolve()
    write_dataset(root, args.n, args.size, args.workers)
    cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first run decodes
    runs = [
        ("cold cache (decodes every image)", run_once(root, args.size, root / "out", args.threads))
    ]
    if args.warm:
        runs.append(("warm cache", run_once(root, args.size, root / "out", args.threads)))
    on_disk = sum(p.stat().st_size for p in cache.glob("*.npy"))
    print(f"load average after the runs: {os.getloadavg()}")
    for what, r in runs:
        print(
            f"{what}: peak RSS {r['peak_gib']:.2f} GiB ({r['peak_kib']} KiB), "
            f"wall {r['wall_s']:.0f} s"
        )
    print(
        f"image cache on disk: {on_disk / 2**20:.0f} MiB ({', '.join(p.name for p in cache.glob('*.npy'))})"
    )


if __name__ == "__main__":
    main()
