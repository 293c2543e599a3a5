"""SWiFT: Soft-Mask Weight Fine-Tuning (Yan et al., MELBA 2025), post-hoc bias mitigation.

Input: a trained ``EncoderHeadModel`` (binary task) and a small external set with labels ``y``
and one sensitive attribute ``a``; no access to the original training data. Algorithm
(methods.md section 5):

1. balance the external set (within each class, downsample the larger attribute group);
2. ``L_pred`` = class-balanced BCE on the binary logit, ``L_bias`` = soft fairness gap;
3. empirical diagonal Fisher ``I = mean_batches (dL/dtheta)^2`` for both losses, min-max
   normalised within each tensor, ``R = I_bias / (I_pred + 1e-10)``, mask ``tanh(R)``
   (soft, SWiFT) or ``1[R > mean R]`` (hard, BMFT, MICCAI 2024);
4. step 1: head frozen, ``beta L_pred + (1 - beta) L_bias``, gradients times mask, lr 1e-4;
5. step 2: head entries with mask above the tensor's mean are zeroed, extractor frozen,
   ``(1 - beta) L_pred + beta L_bias``, lr 1e-3.

Optional selection on a selection set (``select="val"``, our choice; the paper keeps the last
epoch): among the input model and the model after each step-2 epoch, keep the one with the
smallest fairness gap (fairlearn's, on hard predictions) on the selection set whose AUROC there
(every (y, a) cell weighted equally, so the shortcut in that set earns nothing) is at most
``max_auroc_drop`` below the input model's. The input model always qualifies, so a
model that SWiFT makes less fair on the selection set is returned unchanged.

Choices not fixed by the paper (our choice): the model stays in eval mode throughout (batch-norm
statistics frozen, so only masked gradient steps change the network); SGD with momentum 0.9 and
no weight decay (Adam would undo a per-parameter gradient scale, weight decay would move masked
weights); the "logit of class 1" of a two-output head is the log-odds ``l_1 - l_0``; class-balanced
BCE is the mean over classes of the per-class mean BCE in the batch; a fairness term whose cell is
missing from a batch contributes zero.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.metrics import fairness_gaps
from shortcutlab.methods.base import Hparam, RunContext, TaskInfo
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register
from shortcutlab.models import EncoderHeadModel

FAIRNESS_GAPS = ("eodds", "eodds_abs", "eopp", "spd")
MASK_KINDS = ("soft", "hard")
SELECT_KINDS = ("none", "val")
# the hard-prediction gap (metrics.fairness_gaps key) that selection compares, per loss
_SELECTION_GAP = {
    "eodds": "eodds_gap",
    "eodds_abs": "eodds_gap",
    "eopp": "eopp_gap",
    "spd": "dp_gap",
}


# The ``swift`` method's hyperparameters, each default written once: ``SwiftConfig`` takes its
# defaults from here (``attribute`` is the method's alone; ``seed`` the config's, the run's seed).
SWIFT_HPARAMS: dict[str, Hparam] = {
    "attribute": Hparam(None, "sensitive attribute (None: the first one)", type=str),
    "beta": Hparam(0.1, "loss mix: step 1 beta L_pred + (1-beta) L_bias, step 2 reversed"),
    "mask": Hparam("soft", "soft: tanh(R) (SWiFT); hard: 1[R > mean R] (BMFT)", choices=MASK_KINDS),
    "fairness": Hparam(
        "eodds",
        "differentiable gap: eodds (signed sum, the paper's), eodds_abs (sum of |gaps|, our "
        "choice), eopp, spd",
        choices=FAIRNESS_GAPS,
    ),
    "step1_epochs": Hparam(10, "epochs of step 1 (feature extractor)"),
    "step2_epochs": Hparam(10, "epochs of step 2 (head)"),
    "step1_lr": Hparam(1e-4, "SGD learning rate of step 1"),
    "step2_lr": Hparam(1e-3, "SGD learning rate of step 2"),
    "momentum": Hparam(0.9, "SGD momentum of both steps"),
    "batch_size": Hparam(64, "SWiFT batch size"),
    "select": Hparam(
        "none",
        "none: keep the last epoch (paper); val (our choice): keep the input model or the "
        "step-2 epoch with the smallest val gap within max_auroc_drop of the input's val AUROC",
        choices=SELECT_KINDS,
    ),
    "max_auroc_drop": Hparam(0.02, "select=val: largest val AUROC loss allowed"),
}


def _default(name: str) -> Any:
    return SWIFT_HPARAMS[name].default


@dataclass
class SwiftConfig:
    """SWiFT hyperparameters (paper defaults: beta 0.1, lr 1e-4 / 1e-3, about 10 epochs each);
    defaults and meanings are those of ``SWIFT_HPARAMS``."""

    beta: float = _default("beta")
    mask: str = _default("mask")
    fairness: str = _default("fairness")
    step1_epochs: int = _default("step1_epochs")
    step2_epochs: int = _default("step2_epochs")
    step1_lr: float = _default("step1_lr")
    step2_lr: float = _default("step2_lr")
    momentum: float = _default("momentum")
    batch_size: int = _default("batch_size")
    select: str = _default("select")
    max_auroc_drop: float = _default("max_auroc_drop")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise ShortcutlabError(f"SWiFT mask must be one of {MASK_KINDS}, not '{self.mask}'.")
        if self.fairness not in FAIRNESS_GAPS:
            raise ShortcutlabError(
                f"SWiFT fairness gap must be one of {FAIRNESS_GAPS}, not '{self.fairness}'."
            )
        if not 0.0 <= self.beta <= 1.0:
            raise ShortcutlabError(f"SWiFT beta must lie in [0, 1], not {self.beta}.")
        if self.select not in SELECT_KINDS:
            raise ShortcutlabError(
                f"SWiFT select must be one of {SELECT_KINDS}, not '{self.select}'."
            )


@dataclass
class SwiftCompute:
    """Compute spent by SWiFT: wall seconds and samples passed through the encoder."""

    wall_seconds: float = 0.0
    samples_processed: int = 0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class SwiftResult:
    """What ``swift_debias`` did: the masks, the rows it used, per-epoch losses, the compute."""

    masks: dict[str, torch.Tensor]
    kept_rows: np.ndarray
    compute: SwiftCompute
    history: list[dict[str, float]] = field(default_factory=list)
    # which model was kept: "last" (no selection), "input" or "step2_epoch_<k>"
    selected: str = "last"


# -- data preparation ---------------------------------------------------------------------------
def balance_external_set(y: np.ndarray, a: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row indices of a subset in which, within each class, both attribute groups are equal.

    SWiFT step 1: the larger attribute group of each class is downsampled (seeded) to the size
    of the smaller one. ``a`` must be binary.
    """
    y, a = np.asarray(y), np.asarray(a)
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for c in np.unique(y):
        cells = [np.flatnonzero((y == c) & (a == v)) for v in (0, 1)]
        n = min(len(cell) for cell in cells)
        if n == 0:
            raise ShortcutlabError(
                f"the external set has no samples of class {c} in one attribute group; "
                "SWiFT needs both groups in every class."
            )
        keep += [np.sort(rng.choice(cell, n, replace=False)) for cell in cells]
    return np.sort(np.concatenate(keep))


def binarise_attribute(
    a: np.ndarray, y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Multi-valued attribute: keep the best- and worst-AUROC groups (SWiFT, section 5).

    Returns ``(rows, a_binary)``: the rows of those two groups and ``1`` for the worst group,
    ``0`` for the best. A binary attribute is returned unchanged. Groups with one class only
    have no AUROC and are skipped.
    """
    a, y, scores = np.asarray(a), np.asarray(y), np.asarray(scores)
    values = np.unique(a)
    if len(values) <= 2 and set(values.tolist()) <= {0, 1}:
        return np.arange(len(a)), a.astype(np.int64)
    aucs = {}
    for v in values:
        sel = a == v
        if len(np.unique(y[sel])) == 2:
            aucs[v] = roc_auc_score(y[sel], scores[sel])
    if len(aucs) < 2:
        raise ShortcutlabError(
            "fewer than two attribute groups contain both classes; SWiFT cannot binarise the attribute."
        )
    best = max(aucs, key=aucs.get)
    worst = min((v for v in aucs if v != best), key=aucs.get)
    rows = np.flatnonzero((a == best) | (a == worst))
    return rows, (a[rows] == worst).astype(np.int64)


def binary_logit(logits: torch.Tensor) -> torch.Tensor:
    """Log-odds of class 1: the single column of a one-output head, else ``l_1 - l_0``."""
    if logits.ndim == 1:
        return logits
    if logits.shape[1] == 1:
        return logits[:, 0]
    if logits.shape[1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ShortcutlabError(
        f"SWiFT needs a binary task, but the model has {logits.shape[1]} outputs."
    )


# -- losses -------------------------------------------------------------------------------------
def class_balanced_bce(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L_pred``: BCE averaged within each class present in the batch, then over classes."""
    per = F.binary_cross_entropy_with_logits(logit.float(), y.float(), reduction="none")
    terms = [per[y == c].mean() for c in (0, 1) if bool((y == c).any())]
    return torch.stack(terms).mean()


def _soft_rate(p: torch.Tensor, sel: torch.Tensor) -> torch.Tensor | None:
    return p[sel].mean() if bool(sel.any()) else None


def _gap(p: torch.Tensor, sel0: torch.Tensor, sel1: torch.Tensor) -> torch.Tensor:
    r0, r1 = _soft_rate(p, sel0), _soft_rate(p, sel1)
    if r0 is None or r1 is None:
        return p.sum() * 0.0  # a missing cell contributes nothing (our choice)
    return r0 - r1


def fairness_gap(
    p: torch.Tensor, y: torch.Tensor, a: torch.Tensor, kind: str = "eodds"
) -> torch.Tensor:
    """``L_bias``: differentiable fairness gap on soft predictions ``p = sigmoid(logit)``.

    Soft rates are mean ``p`` over a cell. ``eodds``: ``0.5 |(FPR_0 - FPR_1) + (TPR_0 - TPR_1)|``
    (methods.md); ``eodds_abs``: ``0.5 (|FPR_0 - FPR_1| + |TPR_0 - TPR_1|)`` (our choice: in the
    signed sum an FPR gap and a TPR gap of opposite sign cancel, so a model whose positive rate
    depends on the attribute in opposite directions per class, which fairlearn's equalized-odds
    difference reports as its larger gap, has ``eodds`` near 0); ``eopp``: ``|TPR_0 - TPR_1|``;
    ``spd``: ``|P_0 - P_1|`` (subscripts: attribute value).
    """
    a0, a1 = a == 0, a == 1
    pos, neg = y == 1, y == 0
    if kind == "eodds":
        return 0.5 * (_gap(p, neg & a0, neg & a1) + _gap(p, pos & a0, pos & a1)).abs()
    if kind == "eodds_abs":
        return 0.5 * (_gap(p, neg & a0, neg & a1).abs() + _gap(p, pos & a0, pos & a1).abs())
    if kind == "eopp":
        return _gap(p, pos & a0, pos & a1).abs()
    if kind == "spd":
        return _gap(p, a0, a1).abs()
    raise ShortcutlabError(f"unknown fairness gap '{kind}'; choose one of {FAIRNESS_GAPS}.")


def swift_losses(
    model: EncoderHeadModel, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, kind: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_pred, L_bias)`` of one batch."""
    logit = binary_logit(model(x))
    return class_balanced_bce(logit, y), fairness_gap(torch.sigmoid(logit.float()), y, a, kind)


# -- importances and masks ----------------------------------------------------------------------
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def fisher_importance(
    model: nn.Module,
    batches: Iterator[Batch] | list[Batch],
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: ``I = mean over batches of (dL/dtheta)^2`` per parameter."""
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for x, y, a in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, x, y, a).backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    if count == 0:
        raise ShortcutlabError("the external set is empty; SWiFT needs at least one batch.")
    return {n: t / count for n, t in total.items()}


def minmax_normalise(t: torch.Tensor) -> torch.Tensor:
    """Scale a tensor to [0, 1] by its own min and max (a constant tensor becomes zeros)."""
    lo, hi = t.min(), t.max()
    if hi <= lo:
        return torch.zeros_like(t)
    return (t - lo) / (hi - lo)


def importance_ratio(
    i_pred: dict[str, torch.Tensor], i_bias: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``R = minmax(I_bias) / (minmax(I_pred) + 1e-10)``, each normalised within its tensor."""
    return {n: minmax_normalise(i_bias[n]) / (minmax_normalise(i_pred[n]) + 1e-10) for n in i_pred}


def make_masks(ratio: dict[str, torch.Tensor], kind: str = "soft") -> dict[str, torch.Tensor]:
    """Soft mask ``tanh(R)`` (SWiFT) or hard mask ``1[R > mean R]`` per tensor (BMFT)."""
    if kind == "soft":
        return {n: torch.tanh(r) for n, r in ratio.items()}
    if kind == "hard":
        return {n: (r > r.mean()).to(r.dtype) for n, r in ratio.items()}
    raise ShortcutlabError(f"unknown SWiFT mask '{kind}'; choose one of {MASK_KINDS}.")


# -- the two fine-tuning steps ------------------------------------------------------------------
def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _batches(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> Iterator[Batch]:
    n = len(y)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        yield _as_float(x[rows]).to(device), y[rows].to(device), a[rows].to(device)


def _param_names(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n, _ in module.named_parameters()]


def masked_extractor_step(
    model: EncoderHeadModel,
    optimizer: torch.optim.Optimizer,
    masks: dict[str, torch.Tensor],
    batch: Batch,
    beta: float,
    kind: str,
) -> dict[str, float]:
    """One step-1 update: ``beta L_pred + (1 - beta) L_bias``; gradients multiplied by the mask."""
    x, y, a = batch
    l_pred, l_bias = swift_losses(model, x, y, a, kind)
    loss = beta * l_pred + (1.0 - beta) * l_bias
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for n, p in model.encoder.named_parameters():
        if p.grad is not None:
            p.grad.mul_(masks[f"encoder.{n}"])
    optimizer.step()
    return {"loss": loss.item(), "l_pred": l_pred.item(), "l_bias": l_bias.item()}


def reset_head(model: EncoderHeadModel, masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """Step 2's reset: zero the head entries whose mask exceeds that tensor's mean mask."""
    zeroed = {}
    with torch.no_grad():
        for n, p in model.head.named_parameters():
            m = masks[f"head.{n}"]
            sel = m > m.mean()
            p[sel] = 0.0
            zeroed[f"head.{n}"] = int(sel.sum())
    return zeroed


def swift_step1(
    model: EncoderHeadModel,
    masks: dict[str, torch.Tensor],
    data: Batch,
    cfg: SwiftConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Step 1 (feature extractor): head frozen, masked SGD on ``beta L_pred + (1-beta) L_bias``."""
    model.head.requires_grad_(False)
    opt = torch.optim.SGD(model.encoder.parameters(), lr=cfg.step1_lr, momentum=cfg.momentum)
    history = []
    try:
        for epoch in range(cfg.step1_epochs):
            logs = [
                masked_extractor_step(model, opt, masks, b, cfg.beta, cfg.fairness)
                for b in _batches(*data, cfg.batch_size, generator, torch.device(device))
            ]
            history.append({"step": 1, "epoch": epoch, **_mean_logs(logs)})
    finally:
        model.head.requires_grad_(True)
    return history


def swift_step2(
    model: EncoderHeadModel,
    masks: dict[str, torch.Tensor],
    data: Batch,
    cfg: SwiftConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Step 2 (head): reset masked head entries, freeze the extractor, train the head.

    Loss ``(1 - beta) L_pred + beta L_bias``. The extractor is frozen and in eval mode, so its
    features are computed once and the head trains on them (same result, far less compute).
    ``on_epoch(epoch)`` is called after every epoch (selection uses it).
    """
    device = torch.device(device)
    zeroed = reset_head(model, masks)
    x, y, a = data
    model.encoder.requires_grad_(False)
    try:
        with torch.no_grad():
            feats = torch.cat(
                [model.encoder(xb) for xb, _, _ in _batches(x, y, a, cfg.batch_size, None, device)]
            ).cpu()
        head_only = EncoderHeadModel(nn.Identity(), model.head, model.feature_dim)
        opt = torch.optim.SGD(model.head.parameters(), lr=cfg.step2_lr, momentum=cfg.momentum)
        history: list[dict[str, float]] = [
            {"step": 2, "epoch": -1, **{f"zeroed_{k}": float(v) for k, v in zeroed.items()}}
        ]
        for epoch in range(cfg.step2_epochs):
            logs = []
            for fb, yb, ab in _batches(feats, y, a, cfg.batch_size, generator, device):
                l_pred, l_bias = swift_losses(head_only, fb, yb, ab, cfg.fairness)
                loss = (1.0 - cfg.beta) * l_pred + cfg.beta * l_bias
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                logs.append({"loss": loss.item(), "l_pred": l_pred.item(), "l_bias": l_bias.item()})
            history.append({"step": 2, "epoch": epoch, **_mean_logs(logs)})
            if on_epoch is not None:
                on_epoch(epoch)
    finally:
        model.encoder.requires_grad_(True)
    return history


def swift_masks(
    model: EncoderHeadModel, data: Batch, cfg: SwiftConfig, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Fisher importances of ``L_pred`` and ``L_bias`` on ``data``, their ratio, and the mask."""
    device = torch.device(device)

    def pred_loss(m, xb, yb, ab):
        return swift_losses(m, xb, yb, ab, cfg.fairness)[0]

    def bias_loss(m, xb, yb, ab):
        return swift_losses(m, xb, yb, ab, cfg.fairness)[1]

    i_pred = fisher_importance(model, _batches(*data, cfg.batch_size, None, device), pred_loss)
    i_bias = fisher_importance(model, _batches(*data, cfg.batch_size, None, device), bias_loss)
    return make_masks(importance_ratio(i_pred, i_bias), cfg.mask)


def prepare_external_set(
    model: EncoderHeadModel,
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    cfg: SwiftConfig,
    device: torch.device | str = "cpu",
) -> tuple[Batch, np.ndarray]:
    """Binarise a multi-valued attribute, then balance; returns ``((x, y, a), kept rows)``."""
    y = torch.as_tensor(y).long().cpu()
    a = torch.as_tensor(a).long().cpu()
    if set(torch.unique(y).tolist()) - {0, 1}:
        raise ShortcutlabError("SWiFT needs a binary label y in {0, 1}.")
    rows = np.arange(len(y))
    if set(torch.unique(a).tolist()) - {0, 1}:
        scores = _binary_scores(model, x, cfg.batch_size, torch.device(device))
        rows, a_bin = binarise_attribute(a.numpy(), y.numpy(), scores)
        a = a.clone()
        a[torch.as_tensor(rows)] = torch.as_tensor(a_bin)
    kept = rows[balance_external_set(y[rows].numpy(), a[rows].numpy(), cfg.seed)]
    index = torch.as_tensor(kept)
    return (x[index], y[index], a[index]), kept


def swift_debias(
    model: EncoderHeadModel,
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor,
    config: SwiftConfig | None = None,
    device: torch.device | str | None = None,
    select_data: Batch | None = None,
) -> SwiftResult:
    """Run SWiFT on ``model`` in place with the external set ``(x, y, a)``; see the module doc.

    ``x`` is float in [0, 1] or uint8; ``y`` binary; ``a`` any integer attribute (a multi-valued
    one is reduced to its best- and worst-AUROC groups first). ``select_data`` ``(x, y, a)``:
    the selection set that ``select="val"`` needs (the split that selected the checkpoint; it
    is only scored, never trained on).
    """
    cfg = config or SwiftConfig()
    if cfg.select == "val" and select_data is None:
        raise ShortcutlabError("SWiFT select='val' needs a selection set (the val split).")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    start = time.perf_counter()
    was_training = model.training
    model.eval()  # batch-norm statistics frozen (our choice)
    try:
        n_binarise = 0 if set(torch.unique(torch.as_tensor(a)).tolist()) <= {0, 1} else len(y)
        data, kept = prepare_external_set(model, x, y, a, cfg, device)
        n = len(kept)
        selector = _Selector(model, select_data, cfg, device) if cfg.select == "val" else None
        masks = swift_masks(model, data, cfg, device)
        gen = torch.Generator().manual_seed(cfg.seed)
        history = swift_step1(model, masks, data, cfg, gen, device)
        on_epoch = selector.score_step2_epoch if selector is not None else None
        history += swift_step2(model, masks, data, cfg, gen, device, on_epoch)
        selected = "last"
        if selector is not None:
            selected = selector.restore_best()
            history += selector.history
    finally:
        model.train(was_training)
    # encoder passes: binarisation scores, two Fisher passes, step-1 epochs, step-2 features;
    # selection: the input model and the step-1 encoder on the selection set
    samples = n_binarise + 2 * n + cfg.step1_epochs * n + n
    if selector is not None:
        samples += 2 * selector.n
    compute = SwiftCompute(time.perf_counter() - start, samples)
    return SwiftResult(
        masks=masks, kept_rows=kept, compute=compute, history=history, selected=selected
    )


class _Selector:
    """``select="val"``: scores the input model and every step-2 epoch on the selection set and
    keeps the smallest gap among the candidates within ``max_auroc_drop`` of the input's AUROC.

    The extractor is frozen in step 2, so the selection set's features are computed once (after
    step 1) and each epoch costs one pass of the head.
    """

    def __init__(self, model: EncoderHeadModel, data: Batch, cfg: SwiftConfig, device) -> None:
        self.x = torch.as_tensor(data[0])
        self.y, self.a = (torch.as_tensor(t).cpu() for t in data[1:])
        self.n = len(self.y)
        if self.n == 0:
            raise ShortcutlabError("SWiFT's selection set is empty.")
        self.model, self.cfg, self.device = model, cfg, torch.device(device)
        self.feats: torch.Tensor | None = None
        self.history: list[dict[str, float]] = []
        logit = _binary_scores(model, self.x, cfg.batch_size, self.device)
        self.auroc_in, gap = self._score(logit, "input")
        self.best = ("input", gap, {k: v.detach().clone() for k, v in model.state_dict().items()})

    def _score(self, logit: np.ndarray, name: str) -> tuple[float, float]:
        y, a = self.y.numpy(), self.a.numpy()
        auroc = float("nan")
        if len(np.unique(y)) == 2:
            # every (y, a) cell weighted equally: the selection split carries the shortcut,
            # and its plain AUROC would reward a model for keeping it
            _, cell, counts = np.unique(
                np.stack([y, a]), axis=1, return_inverse=True, return_counts=True
            )
            auroc = float(roc_auc_score(y, logit, sample_weight=1.0 / counts[cell.ravel()]))
        gap = fairness_gaps(y, (logit > 0).astype(int), a)[_SELECTION_GAP[self.cfg.fairness]]
        gap = float("inf") if np.isnan(gap) else float(gap)
        self.history.append({"select": name, "select_auroc": auroc, "select_gap": gap})
        return auroc, gap

    def score_step2_epoch(self, epoch: int) -> None:
        model = self.model
        if self.feats is None:  # the step-1 extractor, frozen from here on
            with torch.no_grad():
                self.feats = torch.cat(
                    [
                        model.encoder(
                            _as_float(self.x[s : s + self.cfg.batch_size]).to(self.device)
                        )
                        for s in range(0, self.n, self.cfg.batch_size)
                    ]
                )
        with torch.no_grad():
            logit = binary_logit(model.head(self.feats)).float().cpu().numpy()
        name = f"step2_epoch_{epoch}"
        auroc, gap = self._score(logit, name)
        ok = not (auroc < self.auroc_in - self.cfg.max_auroc_drop)
        if ok and gap < self.best[1]:
            self.best = (name, gap, {k: v.detach().clone() for k, v in model.state_dict().items()})

    def restore_best(self) -> str:
        name, _, state = self.best
        self.model.load_state_dict(state)
        return name


def swift_debias_splits(
    model: EncoderHeadModel,
    external: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    column: int,
    config: SwiftConfig,
    device: torch.device | str | None = None,
) -> SwiftResult:
    """``swift_debias`` on the runner's tensors: the external set ``external`` and, for
    ``select="val"``, the selection split ``val``; the attribute is column ``column`` of ``z``."""
    return swift_debias(
        model,
        external["x"],
        external["y"],
        external["z"][:, column],
        config,
        device,
        select_data=(val["x"], val["y"], val["z"][:, column]),
    )


def _binary_scores(model: EncoderHeadModel, x: torch.Tensor, batch_size: int, device) -> np.ndarray:
    with torch.no_grad():
        out = [
            binary_logit(model(_as_float(x[s : s + batch_size]).to(device))).float().cpu()
            for s in range(0, len(x), batch_size)
        ]
    return torch.cat(out).numpy()


def _mean_logs(logs: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([d[k] for d in logs])) for k in logs[0]} if logs else {}


# -- the ``swift`` method of ``shortcutlab run`` ----------------------------------------------------
def swift_config_from_hparams(hparams: dict[str, Any], seed: int = 0) -> SwiftConfig:
    """``SwiftConfig`` from a method's hyperparameters (keys named as the config's fields)."""
    fields = {f for f in SwiftConfig.__dataclass_fields__ if f != "seed"}
    return SwiftConfig(**{k: hparams[k] for k in fields if k in hparams}, seed=seed)


def attribute_index(info: TaskInfo, attribute: str | None) -> int:
    """Column of ``z`` holding ``attribute`` (None: the first attribute)."""
    if not info.attributes:
        raise ShortcutlabError("SWiFT needs a sensitive attribute, but the dataset has none.")
    if attribute is None:
        return 0
    if attribute not in info.attributes:
        raise ShortcutlabError(
            f"SWiFT attribute '{attribute}' is not one of: {', '.join(info.attributes)}."
        )
    return info.attributes.index(attribute)


@register
class Swift(ERM):
    """ERM training, then SWiFT on ``context.holdout`` (the 10% external set) in ``on_train_end``.

    The holdout is carved from the training split before training, so it is external to the
    model; SWiFT's compute is added to the run's ``samples_seen`` and written to ``swift.json``.
    """

    name = "swift"
    summary = "ERM, then SWiFT soft-mask fine-tuning on a small external set (post hoc)"
    holdout_fraction = 0.1
    HPARAMS = SWIFT_HPARAMS

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        attribute_index(info, hparams.get("attribute"))  # fail before training
        swift_config_from_hparams(hparams)
        self.swift_result: SwiftResult | None = None

    def on_train_end(self, context: RunContext) -> None:
        holdout = context.holdout
        if holdout is None or len(holdout["y"]) == 0:
            raise ShortcutlabError("swift needs an external set; the runner carves it from train.")
        j = attribute_index(self.info, self.hparams.get("attribute"))
        cfg = swift_config_from_hparams(self.hparams, seed=int(context.seed))
        result = swift_debias_splits(self.model, holdout, context.val, j, cfg, context.device)
        self.swift_result = result
        context.samples_seen += result.compute.samples_processed
        record = {
            "attribute": self.info.attributes[j],
            "external_rows": len(holdout["y"]),
            "balanced_rows": len(result.kept_rows),
            "compute": result.compute.as_dict(),
            "selected": result.selected,
            "history": result.history,
        }
        context.layout.file("swift.json").write_text(json.dumps(record, indent=1))
