"""Latent Drifting measurements for docs/RESULTS.md and docs/PERFORMANCE.md.

For each config and seed: the counterfactual set of every flip (``shortcutlab counterfactual``;
the generator is fitted once per config and seed, then reused from the cache), optionally the
``counterfactual-aug`` run against the config's baselines (``--aug``) and a second fit with the
other ``drift_target`` (``--plain``: the FIDs of both targets). Every finished step is appended to
``OUT/latent_drift.json`` at once, so an interrupted run keeps what it measured; ``--table``
prints the Markdown tables of that file.

PYTHONPATH=src python benchmarks/latent_drift.py --out runs/ld-bench \\
    --config configs/latent-drift-cxr.yaml:y,site --config configs/latent-drift-mri.yaml:y,sex \\
    --seeds 0 --aug --plain
PYTHONPATH=src python benchmarks/latent_drift.py --out runs/ld-bench --table
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _progress import printer

KEYS = (
    "delta",
    "fid",
    "fid_delta0",
    "kid",
    "kid_delta0",
    "effectiveness",
    "effectiveness_delta0",
    "preservation",
    "composition_l1",
    "reversibility_l1",
    "ssim",
    "psnr",
    "true_cf_l1",
    "true_cf_l1_delta0",
    "true_vs_source_l1",
    "source_l1",
    "autoencoder_l1",
    "counterfactuals_per_second",
    "fit_seconds",
    "search_seconds",
)


def _append(path: Path, row: dict) -> None:
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows.append(row)
    path.write_text(json.dumps(rows, indent=1, default=float))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", action="append", default=[], help="PATH:flip1,flip2")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--aug", action="store_true")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "latent_drift.json"
    if args.table:
        print_tables(results)
        return
    os.environ.setdefault("SHORTCUTLAB_CACHE", str(args.out / "cache"))
    import torch

    torch.set_num_threads(1)
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.counterfactual import counterfactual_dataset
    from shortcutlab.experiment.runner import run_experiment
    from shortcutlab.store.results import read_results

    for item in args.config:
        path, _, flips = item.partition(":")
        name = Path(path).stem
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = load_config(path, None, [f"seeds=[{seed}]"])
            for flip in flips.split(","):
                out = args.out / f"{name}-{flip}-seed{seed}"
                if not (out / "metrics.json").is_file():
                    start = time.perf_counter()
                    counterfactual_dataset(
                        cfg, flip, out, limit=args.limit, seed=seed, progress=printer()
                    )
                    print(f"{out}: {time.perf_counter() - start:.0f} s", flush=True)
                m = json.loads((out / "metrics.json").read_text())
                row = {"config": name, "seed": seed, "flip": flip, "kind": "counterfactual"}
                _append(results, {**row, **{k: m.get(k) for k in KEYS}})
            if args.aug:
                out = args.out / f"{name}-run-seed{seed}"
                start = time.perf_counter()
                run_experiment(cfg, out, progress=printer())
                table = read_results(out / "results.csv")
                acc = table[(table["target"] == "y") & (table["metric"] == "accuracy")]
                for method, part in acc.groupby("method"):
                    by_split = dict(zip(part["split"], part["value"], strict=True))
                    _append(
                        results,
                        {
                            "config": name,
                            "seed": seed,
                            "kind": "run",
                            "method": method,
                            **{f"{s}_accuracy": v for s, v in by_split.items()},
                            "auroc_bal": float(
                                table[
                                    (table["method"] == method)
                                    & (table["split"] == "bal")
                                    & (table["target"] == "y")
                                    & (table["metric"] == "auroc")
                                ]["value"].mean()
                            ),
                        },
                    )
                print(f"{out}: {time.perf_counter() - start:.0f} s", flush=True)
            if args.plain:
                flip = flips.split(",")[0]
                out = args.out / f"{name}-{flip}-plain-seed{seed}"
                over = [f"seeds=[{seed}]", "hparams.counterfactual-aug.drift_target=plain"]
                cfg_plain = load_config(path, None, over)
                if not (out / "metrics.json").is_file():
                    counterfactual_dataset(
                        cfg_plain, flip, out, limit=args.limit, seed=seed, progress=printer()
                    )
                m = json.loads((out / "metrics.json").read_text())
                row = {"config": name, "seed": seed, "flip": flip, "kind": "plain-target"}
                _append(results, {**row, **{k: m.get(k) for k in KEYS}})


def print_tables(path: Path) -> None:
    rows = json.loads(path.read_text())
    cols = ("fid_delta0", "fid", "delta", "effectiveness", "preservation", "true_cf_l1")
    cols += ("true_vs_source_l1", "composition_l1", "reversibility_l1", "ssim", "psnr")
    print("| config | seed | flip | kind | " + " | ".join(cols) + " |")
    print("|" + "---|" * (4 + len(cols)))
    for r in rows:
        if r["kind"] == "run":
            continue
        vals = [f"{r[c]:.3g}" if isinstance(r.get(c), (int, float)) else "-" for c in cols]
        print(f"| {r['config']} | {r['seed']} | {r['flip']} | {r['kind']} | " + " | ".join(vals))
    print()
    print("| config | seed | method | val acc | inv acc | bal acc | bal AUROC |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] != "run":
            continue
        f = lambda k, r=r: f"{100 * r[k]:.1f}" if isinstance(r.get(k), float) else "-"  # noqa: E731
        print(
            f"| {r['config']} | {r['seed']} | {r['method']} | {f('val_accuracy')} | "
            f"{f('inv_accuracy')} | {f('bal_accuracy')} | {f('auroc_bal')} |"
        )


if __name__ == "__main__":
    main()
