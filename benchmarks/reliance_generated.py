"""Generated against exact counterfactual reliance (docs/RESULTS.md, "Finding the shortcut"; the
issue's target: the two flip rates agree within 10 points on the same models).

For every run folder given (``shortcutlab run`` of an embedded phantom whose config carries the
``counterfactual-aug`` settings, e.g. ``configs/latent-drift-cxr.yaml``), every method's
checkpoint is audited twice on the same ``--limit`` rows of each held-out split:
``--counterfactual exact`` (the phantom renders the same image with one factor changed) and
``--counterfactual generated`` (the Latent Drifting generator of the checkpoint's seed, fitted on
the run's training split: the cached model ``counterfactual-aug`` used, found through
``--cache``). The generated images of one seed are made once and shared by its checkpoints.

    PYTHONPATH=src .venv/bin/python benchmarks/reliance_generated.py --cache runs/ld-bench/cache \\
        --out runs/reliance-generated runs/ld-bench/latent-drift-cxr-run-seed0 ...

Writes ``flip_rates.csv`` (one row per run, method, seed, split, factor: both flip rates) and
prints the Markdown table with the share of pairs within 10 points; each audit folder is kept,
so a rerun skips finished audits.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
from _progress import printer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    ap.add_argument("--cache", type=Path, required=True, help="the runs' SHORTCUTLAB_CACHE")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=100, help="rows per split")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["SHORTCUTLAB_CACHE"] = str(args.cache.resolve())
    import torch

    torch.set_num_threads(args.threads)
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.posthoc import audit_checkpoint
    from shortcutlab.experiment.reliance import generated_counterfactuals
    from shortcutlab.experiment.runner import load_dataset
    from shortcutlab.store.results import read_results

    rows = []
    for run in args.runs:
        cfg = load_config(str(run / "config.yaml"))
        cfg = cfg.model_copy(
            update={"train": cfg.train.model_copy(update={"num_threads": args.threads})}
        )
        table = load_dataset(cfg.dataset)
        makers: dict[int, object] = {}
        for ckpt in sorted(run.glob("*/seed_*/checkpoint.pt")):
            method, seed = ckpt.parent.parent.name, int(ckpt.parent.name.split("_")[1])
            found = {}
            for mode in ("exact", "generated"):
                out = args.out / run.name / method / f"seed_{seed}" / mode
                if not (out / "results.csv").is_file():
                    maker = None
                    if mode == "generated":
                        if seed not in makers:
                            makers[seed] = generated_counterfactuals(cfg, table, seed, printer(4))
                        maker = makers[seed]
                    start = time.perf_counter()
                    audit_checkpoint(ckpt, cfg, out, mode, (), args.limit, None, maker)
                    took = time.perf_counter() - start
                    print(f"{out}: {took:.0f} s", flush=True)
                r = read_results(out / "results.csv")
                found[mode] = r[r["metric"] == "cf_flip_rate"].set_index(["split", "target"])
            both = (
                found["exact"][["value"]]
                .rename(columns={"value": "value_exact"})
                .join(found["generated"][["value"]].rename(columns={"value": "value_generated"}))
            )
            for (split, factor), v in both.iterrows():
                rows.append(
                    {
                        "run": run.name,
                        "method": method,
                        "seed": seed,
                        "split": split,
                        "factor": factor,
                        "flip_exact": v["value_exact"],
                        "flip_generated": v["value_generated"],
                    }
                )
    df = pd.DataFrame(rows)
    df["difference"] = df["flip_generated"] - df["flip_exact"]
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "flip_rates.csv", index=False)
    print(df.to_markdown(index=False, floatfmt=".3f"))
    within = (df["difference"].abs() <= 0.10).groupby(df["factor"]).mean()
    print("\nshare of (model, split) pairs within 10 points, per factor:")
    print(within.to_string(float_format=lambda v: f"{v:.2f}"))
    summary = df.groupby(["factor", "split"])[["flip_exact", "flip_generated", "difference"]]
    print(summary.median().to_markdown(floatfmt=".3f"))
    print("\nby direction of the edit, unweighted mean over the per-group rows:")
    print(by_direction(args.out).to_markdown(floatfmt=".3f"))


def by_direction(out: Path) -> pd.DataFrame:
    """Mean exact and generated flip rate over the per-group rows (``cf_flip_rate[<group>]``) of
    every audit under ``out``, split by the source value of each attribute (0: the edit adds
    it, 1: it removes it)."""
    import re

    from shortcutlab.store.results import read_results

    rows = []
    for path in out.glob("*/*/seed_*/*/results.csv"):
        r = read_results(path)
        r = r[r["metric"].str.startswith("cf_flip_rate[") & (r["target"] != "y")]
        for _, x in r.iterrows():
            group = x["metric"][len("cf_flip_rate[") : -1]
            found = re.search(rf"{re.escape(x['target'])}=(\d+)", group)
            if found:
                key = "/".join(path.parts[-5:-1])
                rows.append(
                    {
                        "audit": key.rsplit("/", 1)[0],
                        "mode": path.parent.name,
                        "split": x["split"],
                        "factor": x["target"],
                        "group": group,
                        "source_value": int(found.group(1)),
                        "flip": x["value"],
                    }
                )
    d = pd.DataFrame(rows)
    wide = d.pivot_table(
        index=["audit", "split", "factor", "group", "source_value"], columns="mode", values="flip"
    ).reset_index()
    wide["difference"] = wide["generated"] - wide["exact"]
    return wide.groupby(["factor", "source_value"])[["exact", "generated", "difference"]].mean()


if __name__ == "__main__":
    main()
