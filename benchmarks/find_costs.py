"""Costs of the shortcut-finding instruments (docs/PERFORMANCE.md, "Finding the shortcut").

- exact counterfactual reliance of one checkpoint on 1,000 images (render the counterfactuals of
  y and the attribute, predict, bootstrap): seconds;
- Grad-CAM and Integrated Gradients on 128 images: seconds;
- the whole ``audit`` of the checkpoint (every split, probes, gap CIs, reliance, attribution):
  seconds and images;
- grounding: images/s of ``generative.grounding.ground`` (50 inversion steps) with a saved model.

    PYTHONPATH=src .venv/bin/python benchmarks/find_costs.py RUN/p0.95/erm/seed_0/checkpoint.pt \\
        RUN/p0.95.yaml [--grounding-model DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("config", type=Path)
    ap.add_argument("--grounding-model", type=Path, default=None)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from shortcutlab.evaluation.attribution import attribution_rows
    from shortcutlab.evaluation.reliance import reliance_rows
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.posthoc import audit_checkpoint, load_run_checkpoint
    from shortcutlab.experiment.runner import load_dataset

    cfg = load_config(args.config)
    table = load_dataset(cfg.dataset)
    _, method = load_run_checkpoint(args.checkpoint, table)
    model = method.model.eval()
    part = table.select(np.arange(min(args.n, len(table))))

    @torch.no_grad()
    def predict(images):
        x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
        return torch.cat([torch.softmax(model(b), 1) for b in x.split(512)]).numpy()

    out = {"images": len(part)}
    t0 = time.perf_counter()
    probs = predict(part.images)
    reliance_rows("all", part, predict, probs, ["y", *table.attributes], table.grouper)
    out["reliance_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    attribution_rows(model, table, ["gradcam", "ig"])
    out["attribution_128_seconds"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        audit_checkpoint(args.checkpoint, cfg, Path(tmp) / "audit")
        out["audit_seconds"] = time.perf_counter() - t0
    out["audit_images"] = len(table)
    if args.grounding_model is not None:
        from shortcutlab.generative.grounding import ground
        from shortcutlab.generative.model import ConditionalDiffusion

        gm = ConditionalDiffusion.load(args.grounding_model)
        sub = table.select(np.arange(32))
        cond = {
            f: torch.from_numpy(sub.meta[f].to_numpy(dtype=np.int64)) for f in gm.conditioner.fields
        }
        t0 = time.perf_counter()
        ground(gm, torch.from_numpy(np.ascontiguousarray(sub.images)), cond, "y")
        out["grounding_images_per_s"] = len(sub) / (time.perf_counter() - t0)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
