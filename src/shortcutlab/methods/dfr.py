"""DFR, Deep Feature Reweighting (Kirichenko et al., ICLR 2023): last-layer retraining.

ERM training, then in ``on_train_end`` the head alone is refit as an L1-regularised logistic
regression (scikit-learn) on frozen, standardised features of a group-balanced subsample of
``context.holdout``; the coefficients are averaged over ``dfr_subsamples`` balanced draws (the
paper's DFR^Tr/Val recipe). The holdout is carved from the training split before training
(``holdout_fraction``, 20%: our choice) and is never the val split used for model selection.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Hparam, RunContext
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register


def group_balanced_subsample(g: np.ndarray, seed: int) -> np.ndarray:
    """Rows of a subsample with every present group downsampled to the smallest group's size."""
    g = np.asarray(g)
    rng = np.random.default_rng(seed)
    groups, counts = np.unique(g, return_counts=True)
    n = counts.min()
    rows = [rng.choice(np.flatnonzero(g == v), n, replace=False) for v in groups]
    return np.sort(np.concatenate(rows))


def fit_balanced_head(
    feats: np.ndarray,
    y: np.ndarray,
    g: np.ndarray,
    num_classes: int,
    c: float = 1.0,
    subsamples: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """DFR's head: ``(W, b)`` with logits ``feats @ W.T + b``, averaged over balanced draws."""
    scaler = StandardScaler().fit(feats)
    z = scaler.transform(feats)
    coefs, intercepts = [], []
    for k in range(subsamples):
        rows = group_balanced_subsample(g, seed + k)
        if len(np.unique(y[rows])) < 2:
            raise ShortcutlabError("the DFR holdout has a single class; it needs every class.")
        solver = "liblinear" if num_classes == 2 else "saga"
        clf = LogisticRegression(l1_ratio=1.0, C=c, solver=solver, max_iter=2000)
        clf.fit(z[rows], y[rows])
        coefs.append(clf.coef_)
        intercepts.append(clf.intercept_)
    w, b = np.mean(coefs, 0), np.mean(intercepts, 0)
    if num_classes == 2:  # one log-odds row -> two symmetric logits, l1 - l0 = w.z + b
        w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
    # undo the standardisation: w.(f - mu)/sd + b = (w/sd).f + (b - w.mu/sd)
    w_f = w / scaler.scale_
    return w_f, b - w_f @ scaler.mean_


@register
class DFR(ERM):
    name = "dfr"
    summary = "ERM, then retrain the last layer on a group-balanced held-out split"
    holdout_fraction = 0.2
    needs_every_group = True
    HPARAMS = {
        "dfr_c": Hparam(
            1.0,
            "inverse L1 strength of the logistic regression",
            lambda r: float(r.choice([1.0, 0.3, 0.1, 0.03])),
        ),
        "dfr_subsamples": Hparam(10, "balanced draws whose coefficients are averaged"),
    }

    def on_train_end(self, context: RunContext) -> None:
        holdout = context.holdout
        if holdout is None or len(holdout["y"]) == 0:
            raise ShortcutlabError("dfr needs a held-out split; the runner carves it from train.")
        self.model.eval()
        feats = []
        with torch.no_grad():
            for batch in context.batches(holdout, shuffle=False):
                feats.append(self.model.features(batch["x"]).float().cpu())
        w, b = fit_balanced_head(
            torch.cat(feats).numpy().astype(np.float64),
            holdout["y"].numpy(),
            holdout["g"].numpy(),
            self.info.num_classes,
            float(self.hparams["dfr_c"]),
            int(self.hparams["dfr_subsamples"]),
            int(context.seed),
        )
        head = self.model.head
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))
