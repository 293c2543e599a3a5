"""Accuracy and AUROC of a finished split-feature run (dcor / mimm / mimmx) with BatchNorm in eval
mode (running statistics, what the runner reports) and in train mode (each batch's statistics).

A large gap means the encoder's output depends on batch statistics that the running averages do
not track, so eval-mode predictions are shifted while the ranking (AUROC) survives. Usage:

    PYTHONPATH=src .venv/bin/python benchmarks/bn_mode_check.py RUN_DIR/mimmx/seed_0 [...]

Needs the run folder's ``../config.yaml``; batches of 150 (the configs' batch size) on val.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from shortcutlab.evaluation.metrics import auroc
from shortcutlab.experiment import config as config_mod
from shortcutlab.experiment import runner
from shortcutlab.experiment.context import tensors_of
from shortcutlab.models.checkpoint import Checkpoint


@torch.no_grad()
def logits(method, x: torch.Tensor, train_mode: bool, batch: int = 150) -> torch.Tensor:
    method.train(train_mode)
    out = [method.predict(x[i : i + batch].float() / 255.0) for i in range(0, len(x), batch)]
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.seed_dirs:
        cfg = config_mod.load_config(folder.parent.parent / "config.yaml")
        table = runner.load_dataset(cfg.dataset)
        ckpt = Checkpoint.load(folder / "checkpoint.pt")
        info = runner.task_info(table, cfg, 1)
        method = runner.build_method(ckpt.method, ckpt.hparams, info, cfg.train)
        method.load_state_dict(ckpt.method_state)
        val = tensors_of(table.split("val"))
        y = val["y"].numpy()
        parts = []
        for mode in (False, True):
            out = logits(method, val["x"], mode)
            acc = float((out.argmax(1).numpy() == y).mean())
            probs = torch.softmax(out, 1).numpy()
            parts.append(
                f"{'train' if mode else 'eval'}-mode BN: val acc {100 * acc:5.1f} "
                f"AUROC {100 * auroc(probs, y):5.1f}"
            )
        print(f"{folder} (epoch {ckpt.selected_epoch}): " + "; ".join(parts))


if __name__ == "__main__":
    main()
