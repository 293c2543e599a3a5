"""Copy the text results of a run folder (no checkpoints, no images) to a folder kept in git.

The MIMM-X runs of docs/RESULTS.md take hours each on a CPU; the folders under
``benchmarks/results/`` keep what the table scripts read, so their figures can be rebuilt
without retraining (``benchmarks/mimmx_table.py benchmarks/results/mimmx-mri/*``). Copied: the
run's ``config.yaml`` and ``split_counts.csv`` (``dataset.csv`` too with ``--dataset``, for the
table script's ``--floor``; 100 KB, so one folder per config keeps it), and for every
finished ``METHOD/seed_K`` (one with ``done.json``) its ``results.csv``, ``done.json`` and
``log.jsonl``; unfinished seeds are named and left out. Usage:

    .venv/bin/python benchmarks/keep_run.py RUN_DIR DEST_DIR [--dataset]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT_FILES = ("config.yaml", "split_counts.csv")
SEED_FILES = ("results.csv", "done.json", "log.jsonl")


def keep(run: Path, dest: Path, dataset: bool = False) -> list[str]:
    """Copy; return the ``METHOD/seed_K`` folders copied."""
    if not (run / "config.yaml").is_file():
        raise SystemExit(f"{run}: not a run folder (no config.yaml)")
    seeds = sorted(p.parent for p in run.glob("*/seed_*/done.json"))
    for p in sorted(run.glob("*/seed_*")):
        if p not in seeds:
            print(f"left out, unfinished: {p.relative_to(run)}", file=sys.stderr)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ROOT_FILES + (("dataset.csv",) if dataset else ()):
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    copied = []
    for seed in seeds:
        rel = seed.relative_to(run)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in SEED_FILES:
            if (seed / name).is_file():
                shutil.copy2(seed / name, dest / rel / name)
        copied.append(str(rel))
    return copied


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dataset"]
    if len(args) != 2:
        raise SystemExit(__doc__)
    for rel in keep(Path(args[0]), Path(args[1]), dataset="--dataset" in sys.argv):
        print(rel)
