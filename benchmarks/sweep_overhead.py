"""Ray's overhead on a sweep (docs/PERFORMANCE.md, "Sweeps: Ray against local").

Runs the same sweep twice with ``shortcutlab sweep``, each in a process of its own: ``--executor
local`` (trials one after another, in-process) and ``--executor ray`` (a local Ray started by the
command, ``sweep.resources.num_cpus`` per trial). It reports each command's wall time, the sum of
the trials' own times (``trials.csv`` ``seconds``: each trial measured in the process that ran
it), Ray's wall time against that sum divided by the cores (the target is <= 1.10), the peak
resident memory of the command's process tree (all processes together, and the largest one),
sampled from /proc every 0.2 s, and whether the two results tables are identical.

    python benchmarks/sweep_overhead.py --out /tmp/sweep-overhead             # 12 trials
    python benchmarks/sweep_overhead.py --out /tmp/so dataset.size=1500 train.epochs=3
    python benchmarks/sweep_overhead.py --out /tmp/so-ray --executors ray     # Ray alone

The default sweep is the quick preset with erm, rebalance and groupdro, 2 draws and 2 seeds
(3 x 2 x 2 = 12 trials), one torch thread per trial; key=value overrides are passed on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

DEFAULT = ["methods=[erm,rebalance,groupdro]", "seeds=[0,1]", "train.num_threads=1"]


def _children(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(cmd: list[str]) -> dict:
    """Wall time and peak RSS (tree total, largest process) of ``cmd``."""
    peak = {"total": 0, "largest": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sizes = [_rss_kib(p) for p in _children(proc.pid)]
            peak["total"] = max(peak["total"], sum(sizes))
            peak["largest"] = max(peak["largest"], max(sizes, default=0))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {
        "wall_s": wall,
        "peak_rss_total_kib": peak["total"],
        "peak_rss_largest_kib": peak["largest"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder (emptied)")
    parser.add_argument("--trials", type=int, default=2, help="draws per method")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="cores of this machine")
    parser.add_argument(
        "--executors",
        default="local,ray",
        help="which executors to run, comma-separated (the comparison needs both)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the quick preset")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    base = [sys.executable, "-m", "shortcutlab.cli", "sweep", "--preset", "quick", "--quiet"]
    base += ["--trials", str(args.trials), *DEFAULT, *args.overrides]
    rows = {}
    executors = [e for e in args.executors.split(",") if e]
    for executor in executors:
        out = args.out / executor
        m = run_measured([*base, "--executor", executor, "--out", str(out)])
        trials = pd.read_csv(out / "trials.csv")
        own = float(trials["seconds"].sum())
        cores = 1 if executor == "local" else args.cpus
        m.update(
            trials=len(trials),
            trial_seconds_sum=own,
            ideal_s=own / cores,
            ratio=m["wall_s"] / (own / cores),
        )
        rows[executor] = m
        print(executor, json.dumps(m), flush=True)
    if {"local", "ray"} <= set(executors):
        a = pd.read_csv(args.out / "local" / "results.csv")
        b = pd.read_csv(args.out / "ray" / "results.csv")
        keys = ["method", "trial", "seed", "split", "target", "metric"]
        a, b = (d.sort_values(keys).reset_index(drop=True) for d in (a, b))
        rows["identical"] = bool(a.equals(b))
        rows["ray_over_local_wall"] = rows["ray"]["wall_s"] / rows["local"]["wall_s"]
    rows["load_average"] = os.getloadavg()
    (args.out / "overhead.json").write_text(json.dumps(rows, indent=1))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
