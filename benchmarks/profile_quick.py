"""Where a quick run's time goes (docs/PERFORMANCE.md, "Later on 2026-12-01"): cProfile of one
method of the quick preset for a given number of epochs, the top functions by cumulative time.

    .venv/bin/python benchmarks/profile_quick.py --out /tmp/qprof --method erm --epochs 1
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="scratch run folder (emptied)")
    ap.add_argument("--method", default="erm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.runner import run_experiment

    shutil.rmtree(args.out, ignore_errors=True)
    cfg = load_config(None, "quick", [f"methods=[{args.method}]", f"train.epochs={args.epochs}"])
    profile = cProfile.Profile()
    profile.runcall(run_experiment, cfg, args.out)
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
