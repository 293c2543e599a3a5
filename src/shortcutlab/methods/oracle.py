"""Oracle from MaskMedPaint's comparison: ERM on the *labelled* target-domain rows of the
training split only (domain attribute == target). Uses labels no other method may use; report
it as an upper reference, not a competitor.

The target rows are few (100 in configs/maskmedpaint-derm.yaml), so the oracle repeats them up to
the size of the training split: it takes as many optimiser steps as ERM (our choice; with 100
images and 10 epochs it took 20 steps and predicted one class)."""

from __future__ import annotations

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Hparam, RunContext
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.maskmedpaint import domain_column
from shortcutlab.methods.registry import register


@register
class Oracle(ERM):
    name = "oracle"
    summary = "ERM on the labelled target-domain training rows only (an upper reference)"
    HPARAMS = {
        "domain": Hparam("site", "attribute whose values are the domains"),
        "target": Hparam(1, "value of the domain attribute that is the target domain"),
    }

    def training_data(self, context: RunContext) -> dict[str, torch.Tensor]:
        """The labelled target images: the split ``target_unlabelled`` of a domain-shift dataset
        (with its labels), else the target-domain rows of the training split."""
        unlabelled = context.unlabelled
        train = context.train
        if unlabelled is not None:
            if len(torch.unique(unlabelled["y"])) < 2:
                raise ShortcutlabError("the oracle needs target images of every class")
            return _repeat_to(unlabelled, len(train["y"]))
        keep = torch.nonzero(
            train["z"][:, domain_column(self.info, self.hparams)] == int(self.hparams["target"])
        ).flatten()
        if len(torch.unique(train["y"][keep])) < 2:
            raise ShortcutlabError("the oracle needs target-domain training rows of every class")
        return _repeat_to({key: value[keep] for key, value in train.items()}, len(train["y"]))


def _repeat_to(rows: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """``rows`` repeated whole until there are at least ``n`` (row ids renumbered)."""
    reps = max(1, -(-n // len(rows["y"])))
    out = {key: value.repeat(reps, *[1] * (value.dim() - 1)) for key, value in rows.items()}
    out["idx"] = torch.arange(len(out["y"]))
    return out
