"""Checks that a trained model is a classifier at all, before its numbers are believed.

A model that predicts one class, or that sits at chance on val although its training loss is
low, makes every metric of the results table misleading (a val -> inv "drop" of 0.0 reads as
"no shortcut"). ``degenerate_reasons`` says why a model is flagged; the runner writes the flag
as ``metric=degenerate`` (docs/contracts.md), prints it and the report shows it.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import balanced_accuracy_score

# one class predicted for at least this share of val
ONE_CLASS_SHARE = 0.99
# "at chance": balanced accuracy within this margin of 1 / C ...
CHANCE_MARGIN = 0.05
# ... while the training loss is below this fraction of the loss of a uniform guess, log C
LOW_LOSS_FRACTION = 0.5


def degenerate_reasons(
    probs: np.ndarray, y: np.ndarray, train_loss: float | None, num_classes: int
) -> list[str]:
    """Why the model whose val class probabilities are ``probs`` (N, C) is not usable; [] if it
    is. ``train_loss``: the mean training loss of the last epoch (None: not known)."""
    if len(y) == 0:
        return []
    reasons = []
    pred = probs.argmax(axis=1)
    counts = np.bincount(pred, minlength=num_classes)
    top = int(counts.argmax())
    share = counts[top] / len(pred)
    if share >= ONE_CLASS_SHARE and len(np.unique(y)) > 1:
        reasons.append(f"predicts class {top} for {share:.1%} of val")
    chance = 1.0 / num_classes
    bal = float(balanced_accuracy_score(y, pred)) if len(np.unique(y)) > 1 else float("nan")
    low_loss = train_loss is not None and train_loss < LOW_LOSS_FRACTION * math.log(num_classes)
    if low_loss and bal <= chance + CHANCE_MARGIN:
        reasons.append(
            f"val balanced accuracy {bal:.3f} is at chance ({chance:.2f}) while the training "
            f"loss is {train_loss:.3g}"
        )
    return reasons
