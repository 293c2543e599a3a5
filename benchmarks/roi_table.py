"""MaskMedPaint with the grounded ROI against the phantom's true ROI (docs/RESULTS.md,
"Finding the shortcut"): per seed, ERM's and maskmedpaint's accuracy on ``target`` in each
run, the gain, the domain check; then the share of the true-ROI gain that the grounded ROI keeps
(the issue's target: >= 80%).

    PYTHONPATH=src .venv/bin/python benchmarks/roi_table.py \\
        --grounded runs/mmp-grounded-s0 runs/mmp-grounded-s1 --data runs/mmp-data-s0 runs/mmp-data-s1

Each folder is a ``shortcutlab run configs/maskmedpaint-derm.yaml 'methods=[erm,maskmedpaint]'``
output (with ``dataset.roi=grounding`` for ``--grounded``); seeds are matched by their number.
``--sets GROUNDED DATA`` (two generated sets of one seed, folders holding ``metadata.csv``, in
the cache) also compares the two ROIs of each source image: area, the share of the true ROI
inside the grounded one, IoU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from shortcutlab.store.layout import ExperimentLayout
from shortcutlab.store.results import read_results


def scores(folder: Path) -> pd.DataFrame:
    r = read_results(ExperimentLayout(folder).results)
    r = r[(r["metric"] == "accuracy") & (r["target"] == "y")]
    rows = []
    for seed, part in r.groupby("seed"):
        acc = part.set_index(["method", "split"])["value"]
        gen = folder / "maskmedpaint" / f"seed_{seed}" / "generated.json"
        check = json.loads(gen.read_text()).get("target_rate") if gen.exists() else None
        rows.append(
            {
                "seed": int(seed),
                "erm": 100 * acc[("erm", "target")],
                "maskmedpaint": 100 * acc[("maskmedpaint", "target")],
                "maskmedpaint_bal": 100 * acc[("maskmedpaint", "bal")],
                "domain_check": None if check is None else 100 * check,
            }
        )
    return pd.DataFrame(rows)


def compare_rois(grounded: Path, data: Path) -> None:
    import numpy as np
    from PIL import Image

    def load(folder: Path):
        root = next(folder.rglob("metadata.csv")).parent
        meta = pd.read_csv(root / "metadata.csv").drop_duplicates("source_row")
        return root, meta.set_index("source_row")["mask"]

    (rg, g), (rd, d) = load(grounded), load(data)
    rows = sorted(set(g.index) & set(d.index))
    area_g, area_d, inside, iou = [], [], [], []
    for r in rows:
        a = np.array(Image.open(rg / g[r])) > 0
        b = np.array(Image.open(rd / d[r])) > 0
        area_g.append(a.mean())
        area_d.append(b.mean())
        inside.append((a & b).sum() / max(b.sum(), 1))
        iou.append((a & b).sum() / max((a | b).sum(), 1))
    print(
        f"\n{len(rows)} source images: ROI area grounded {np.mean(area_g):.1%}, true "
        f"{np.mean(area_d):.1%} of the image; true ROI inside the grounded one: mean "
        f"{np.mean(inside):.1%}, median {np.median(inside):.1%}; IoU median {np.median(iou):.2f}"
    )


def share(grounded: float, true: float) -> str:
    """The grounded gain as a share of the true-ROI gain; none where the true ROI gains nothing
    (a ratio of two losses is not a share of a gain)."""
    return f"{grounded / true:.2f}" if true > 0 else "(no true-ROI gain)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grounded", type=Path, nargs="+", required=True)
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--sets", type=Path, nargs=2, metavar=("GROUNDED", "DATA"))
    args = ap.parse_args()
    both = {}
    for name, folders in (("grounded", args.grounded), ("data", args.data)):
        frame = pd.concat([scores(f) for f in folders], ignore_index=True)
        frame["gain"] = frame["maskmedpaint"] - frame["erm"]
        both[name] = frame.set_index("seed")
    seeds = sorted(set(both["grounded"].index) & set(both["data"].index))
    print(
        "| seed | erm | maskmedpaint, true ROI | gain | domain check | maskmedpaint, grounded "
        "ROI | gain | domain check | grounded gain / true gain |\n|" + "---|" * 9
    )
    for s in seeds:
        d, g = both["data"].loc[s], both["grounded"].loc[s]
        print(
            f"| {s} | {d['erm']:.1f} | {d['maskmedpaint']:.1f} | {d['gain']:+.1f} | "
            f"{d['domain_check']:.1f}% | {g['maskmedpaint']:.1f} | {g['gain']:+.1f} | "
            f"{g['domain_check']:.1f}% | {share(g['gain'], d['gain'])} |"
        )
    d, g = both["data"].loc[seeds], both["grounded"].loc[seeds]
    print(
        f"| mean | {d['erm'].mean():.1f} | {d['maskmedpaint'].mean():.1f} | "
        f"{d['gain'].mean():+.1f} | | {g['maskmedpaint'].mean():.1f} | {g['gain'].mean():+.1f} "
        f"| | {share(g['gain'].mean(), d['gain'].mean())} |"
    )
    same = (d["erm"] - g["erm"]).abs().max()
    print(
        f"\nERM differs between the paired runs by at most {same:.2f} points (same seed, same data)"
    )
    if args.sets:
        compare_rois(*args.sets)


if __name__ == "__main__":
    main()
