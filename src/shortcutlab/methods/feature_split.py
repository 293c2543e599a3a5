"""Shared machinery of the representation-level methods (dCor, MIMM, MIMM-X).

The encoder output is split into named blocks ``f = [f_y, f_<attr_1>, ..., f_<attr_k>]``
(Fay et al. 2023, 2025): a head classifies ``y`` from ``f_y`` only, one head per attribute
classifies it from its own block. The model's ``head`` becomes a ``BlockHead`` on ``f_y``, so
``model(x)``, ``predict`` and post-hoc methods see the task head; the block sizes are
hyperparameters (our choice: ``f_y`` 32, each ``f_z`` 16) and ``encoder_dim`` returns the total.

The encoder's final ReLU is removed for the split methods (``final_relu: false``, docs/methods.md
"The feature blocks"): after one epoch about half of each block's units were zero on every
training image, and a dead unit cannot come back. ``stochastic_sigma > 0`` puts a stochastic
layer there instead, ``f = tanh(mu) + sigma * eps`` in training (the mean ``tanh(mu)`` in
evaluation), so the MI between two blocks is finite: at most ``0.5 log(1 + 1 / sigma^2)`` nats
per unit of the smaller block (a Gaussian channel with bounded input).

Honest MI accounting (docs/methods.md, "Honest MI accounting"): after training, rows
``metric = mi_fresh_critic`` (``estimators.fresh_critic``: a new critic fitted on the frozen
train features, scored on val) for ``f_y`` against each confounder block and against all of them
(target ``all``), beside the training penalty's own value on val (``mi_training_critic``, or
``dcor_penalty`` for dCor); per epoch a cheaper fresh critic on ``f_y`` against all blocks is
logged as ``mi_fresh_critic``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.estimators.constrained_critic import GradientPenaltyMINE, SpectralMINE
from shortcutlab.estimators.fresh_critic import fresh_critic_mi
from shortcutlab.estimators.infonce import InfoNCE
from shortcutlab.estimators.mine import MINE
from shortcutlab.methods.base import Hparam, Method, RunContext, TaskInfo
from shortcutlab.models import EncoderHeadModel


class BlockHead(nn.Module):
    """A linear head that reads only the feature slice ``[start, stop)``."""

    def __init__(self, start: int, stop: int, out_features: int):
        super().__init__()
        self.start, self.stop = start, stop
        self.linear = nn.Linear(stop - start, out_features)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f[:, self.start : self.stop])


class StochasticFeatures(nn.Module):
    """``tanh(mu) + sigma * eps`` in training, ``tanh(mu)`` in evaluation (``sigma`` fixed)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        f = torch.tanh(mu)
        if self.training and self.sigma > 0:
            f = f + self.sigma * torch.randn_like(f)
        return f


def replace_final_relu(encoder: nn.Module, new: nn.Module) -> bool:
    """Put ``new`` in place of the encoder's last module if it is a ReLU (searching the last
    child recursively); returns whether one was found."""
    children = list(encoder.named_children())
    if not children:
        return False
    name, last = children[-1]
    if isinstance(last, nn.ReLU):
        setattr(encoder, name, new)
        return True
    return replace_final_relu(last, new)


def split_encoder_output(model: EncoderHeadModel, hparams: dict[str, Any]) -> None:
    """The split methods' encoder end, from their hparams: the final ReLU removed
    (``final_relu: false``) or replaced by ``StochasticFeatures`` (``stochastic_sigma > 0``).
    Also used to rebuild a trained split model from its checkpoint."""
    sigma = float(hparams.get("stochastic_sigma", 0.0))
    if sigma < 0:
        raise ShortcutlabError(f"stochastic_sigma must be 0 or positive, got {sigma}")
    if sigma > 0:
        layer = StochasticFeatures(sigma)
        if not replace_final_relu(model.encoder, layer):
            model.encoder = nn.Sequential(model.encoder, layer)
    elif not hparams.get("final_relu", True):
        replace_final_relu(model.encoder, nn.Identity())


BLOCK_HPARAMS: dict[str, Hparam] = {
    "f_y_dim": Hparam(32, "size of the task block f_y (our choice)"),
    "f_z_dim": Hparam(16, "size of each confounder block f_<attr> (our choice)"),
    "final_relu": Hparam(
        False, "keep the encoder's final ReLU (true = the behaviour before; units die under it)"
    ),
    "stochastic_sigma": Hparam(
        0.0, "stochastic encoder f = tanh(mu) + sigma * eps (finite MI); 0 = deterministic"
    ),
    "audit_steps": Hparam(300, "steps of the fresh critic after training (0: no MI rows)"),
    "audit_epoch_steps": Hparam(100, "steps of the cheap fresh critic per epoch (0: off)"),
    "audit_hidden": Hparam(64, "width of the fresh critic's hidden layers"),
}

AUDIT_EPOCH_ROWS = 1024  # train and val rows the per-epoch fresh critic sees (our choice)

CRITICS: dict[str, type[MINE]] = {
    "mine": MINE,
    "infonce": InfoNCE,
    "spectral": SpectralMINE,
    "gradient_penalty": GradientPenaltyMINE,
}

MINE_HPARAMS: dict[str, Hparam] = {
    "n_b": Hparam(6, "N_B: one encoder step, then N_B - 1 MINE steps per update"),
    "mine_lr": Hparam(
        1e-4,
        "Adam lr of the statistics network (paper 1e-5 over long runs; our default 1e-4)",
        lambda r: float(10 ** r.uniform(-5, -3)),
    ),
    "mine_hidden": Hparam(400, "width of the statistics network's three hidden layers"),
    "mine_ema_alpha": Hparam(0.0, "EMA rate of MINE's gradient bias correction; 0 turns it off"),
    "mi_given_y": Hparam(
        False,
        "our choice: marginal pairs only within a class, so the penalty is I(f_y; f_z | y) "
        "(the z-information beyond y) instead of I(f_y; f_z)",
    ),
    "mi_detach_z": Hparam(
        False,
        "our choice: the MI term reaches the encoder only through f_y; the confounder blocks are "
        "shaped by their heads alone, so the term cannot be met by emptying them",
    ),
    "mi_grad_clip": Hparam(
        False,
        "adaptive gradient clipping (MINE, Belghazi et al. 2018): the MI term's gradient on the "
        "encoder is scaled down to at most the norm of the head losses' gradient",
    ),
    "critic": Hparam(
        "mine",
        "the dependence estimator: mine (DV bound, the paper), infonce (at most log B), "
        "spectral (spectrally normalised critic), gradient_penalty (slope-penalised critic)",
        choices=tuple(CRITICS),
    ),
    "gp_weight": Hparam(1.0, "weight of the critic's gradient penalty (critic: gradient_penalty)"),
    "critic_batches": Hparam(
        "same",
        "same: the N_B - 1 critic steps reuse this batch's features (our choice); fresh: they "
        "draw new training batches through the updated encoder (the official MIMM code)",
        choices=("same", "fresh"),
    ),
}


def clip_penalty_gradients(
    task: list[torch.Tensor | None],
    penalty: list[torch.Tensor | None],
    measured: list[bool],
) -> tuple[list[torch.Tensor | None], float]:
    """Adaptive gradient clipping: ``g = g_task + s * g_penalty`` with
    ``s = min(1, ||g_task|| / ||g_penalty||)``, both norms over the ``measured`` tensors (the
    encoder's). Returns the summed gradients (None where both are None) and ``s``."""

    def norm(grads: list[torch.Tensor | None]) -> torch.Tensor:
        parts = [
            g.pow(2).sum() for g, m in zip(grads, measured, strict=True) if m and g is not None
        ]
        return torch.stack(parts).sum().sqrt() if parts else torch.tensor(0.0)

    n_task, n_pen = norm(task), norm(penalty)
    scale = float(torch.clamp(n_task / n_pen, max=1.0)) if n_pen > 0 else 1.0
    out: list[torch.Tensor | None] = []
    for gt, gp in zip(task, penalty, strict=True):
        if gt is None and gp is None:
            out.append(None)
        elif gp is None:
            out.append(gt)
        else:
            out.append(scale * gp if gt is None else gt + scale * gp)
    return out, scale


class FeatureSplitMethod(Method):
    """Base: encoder blocks, one head per block, ``features`` returns every named block."""

    HPARAMS: ClassVar[dict[str, Hparam]] = dict(BLOCK_HPARAMS)

    @classmethod
    def split_attributes(cls, info: TaskInfo) -> list[str]:
        """The attributes that get their own block (all of them by default)."""
        return list(info.attributes)

    @classmethod
    def encoder_dim(cls, info: TaskInfo, hparams: dict[str, Any]) -> int:
        return int(hparams["f_y_dim"]) + len(cls.split_attributes(info)) * int(hparams["f_z_dim"])

    def __init__(self, model: EncoderHeadModel, info: TaskInfo, hparams: dict[str, Any]):
        super().__init__(model, info, hparams)
        attrs = self.split_attributes(info)
        if not attrs:
            raise ShortcutlabError(f"method '{self.name}' needs at least one attribute (z)")
        dim = self.encoder_dim(info, self.hparams)
        if model.feature_dim != dim:
            raise ShortcutlabError(
                f"method '{self.name}' needs encoder features of size {dim} "
                f"(f_y_dim + k * f_z_dim), the model has {model.feature_dim}"
            )
        dy, dz = int(self.hparams["f_y_dim"]), int(self.hparams["f_z_dim"])
        self.split_attrs = attrs
        self.attr_columns = [info.attributes.index(a) for a in attrs]
        self.model.head = BlockHead(0, dy, info.num_classes)
        cards = [info.attribute_cardinalities[c] for c in self.attr_columns]
        self.z_heads = nn.ModuleList(
            BlockHead(dy + i * dz, dy + (i + 1) * dz, card) for i, card in enumerate(cards)
        )
        split_encoder_output(model, self.hparams)
        self.epoch_metrics: dict[str, float] = {}

    # -- blocks ---------------------------------------------------------------------------------
    def split(self, f: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``f -> (f_y, [f_z1, ..., f_zk])``."""
        dy = self.model.head.stop
        return f[:, :dy], [f[:, h.start : h.stop] for h in self.z_heads]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.model.features(x)
        f_y, f_zs = self.split(f)
        out = {"f": f, "f_y": f_y}
        out.update({f"f_{a}": fz for a, fz in zip(self.split_attrs, f_zs, strict=True)})
        return out

    def head_losses(
        self, f: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Task CE on ``f_y`` and one CE per confounder head on its own block."""
        ce_y = self.weighted_ce(self.model.head(f), batch["y"])
        ce_z = [
            F.cross_entropy(head(f).float(), batch["z"][:, col])
            for head, col in zip(self.z_heads, self.attr_columns, strict=True)
        ]
        return ce_y, ce_z

    # -- honest MI accounting -------------------------------------------------------------------
    def audit_pairs(
        self, blocks: dict[str, np.ndarray]
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(target, f_y, f_z)`` pairs of the fresh critic: each confounder block, and all of
        them concatenated (target ``all``) where there are several."""
        f_zs = [blocks[f"f_{a}"] for a in self.split_attrs]
        pairs = [(a, blocks["f_y"], fz) for a, fz in zip(self.split_attrs, f_zs, strict=True)]
        if len(f_zs) > 1:
            pairs.append(("all", blocks["f_y"], np.concatenate(f_zs, 1)))
        return pairs

    def fresh_mi(
        self, train: np.ndarray, train_b: np.ndarray, val: np.ndarray, val_b: np.ndarray, **kw
    ) -> float:
        return fresh_critic_mi(
            train,
            train_b,
            val,
            val_b,
            hidden=int(self.hparams["audit_hidden"]),
            noise_sigma=float(self.hparams["stochastic_sigma"]),
            **kw,
        )

    def penalty_rows(self, val: dict[str, np.ndarray], seed: int) -> list[dict]:
        """The training penalty's own value on val features (subclasses)."""
        return []

    def dependence_rows(
        self, features: dict[str, dict[str, np.ndarray]], seed: int = 0
    ) -> list[dict]:
        """``mi_fresh_critic`` rows (fit on train features, scored on val) and the training
        penalty's value on val; [] without both splits or with ``audit_steps: 0``."""
        steps = int(self.hparams["audit_steps"])
        if steps <= 0 or "train" not in features or "val" not in features:
            return []
        train, val = features["train"], features["val"]
        rows = []
        for (target, a, b), (_, va, vb) in zip(
            self.audit_pairs(train), self.audit_pairs(val), strict=True
        ):
            value = self.fresh_mi(a, b, va, vb, steps=steps, seed=seed)
            rows.append(
                {"split": "val", "target": target, "metric": "mi_fresh_critic", "value": value}
            )
        return rows + self.penalty_rows(val, seed)

    def on_epoch_end(self, epoch: int, context: RunContext) -> None:
        """The cheap per-epoch fresh critic (``audit_epoch_steps``) on ``f_y`` against all
        confounder blocks, left in ``epoch_metrics`` for the epoch's log line."""
        self.epoch_metrics = {}
        steps = int(self.hparams["audit_epoch_steps"])
        if steps <= 0 or context is None:
            return
        blocks = {}
        for split, tensors in (("train", context.train), ("val", context.val)):
            n = len(tensors["y"])
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
            idx = idx[:AUDIT_EPOCH_ROWS]
            blocks[split] = context.features(self, {k: v[idx] for k, v in tensors.items()})
        _, a, b = self.audit_pairs(blocks["train"])[-1]
        _, va, vb = self.audit_pairs(blocks["val"])[-1]
        self.epoch_metrics["mi_fresh_critic"] = self.fresh_mi(a, b, va, vb, steps=steps, seed=epoch)

    # -- optimisation ---------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Encoder and all heads (not the statistics networks, which have their own optimiser)."""
        return list(self.model.parameters()) + list(self.z_heads.parameters())

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = self.make_optimizer(self.trainable_parameters())
        return self._optimizer


class MINEPenaltyMethod(FeatureSplitMethod):
    """Base of MIMM / MIMM-X: statistics networks trained by ``N_B - 1`` maximisation steps."""

    HPARAMS: ClassVar[dict[str, Hparam]] = {**BLOCK_HPARAMS, **MINE_HPARAMS}

    def __init__(self, model: EncoderHeadModel, info: TaskInfo, hparams: dict[str, Any]):
        super().__init__(model, info, hparams)
        self._critic_stream: Iterator[dict[str, torch.Tensor]] | None = None
        self._critic_drawn = 0  # batches taken from the stream (epoch checkpoints)

    def build_mine(self, dim_a: int, dim_b: int) -> MINE:
        alpha = float(self.hparams["mine_ema_alpha"])
        kind = self.hparams["critic"]
        if kind not in CRITICS:
            raise ShortcutlabError(f"critic must be one of {', '.join(CRITICS)}, got '{kind}'")
        kw: dict[str, Any] = {"ema_alpha": alpha or None}
        if kind == "gradient_penalty":
            kw["gp_weight"] = float(self.hparams["gp_weight"])
        return CRITICS[kind](dim_a, dim_b, int(self.hparams["mine_hidden"]), **kw)

    # -- the critic's batches ---------------------------------------------------------------------
    def on_train_start(self, context: RunContext) -> None:
        """With ``critic_batches: fresh``, an endless stream of shuffled training batches for
        the critic steps (seeded apart from the encoder's batches)."""
        super().on_train_start(context)
        if self.hparams["critic_batches"] != "fresh":
            return
        gen = torch.Generator().manual_seed(int(context.seed) + 7919)
        tensors = context.train

        def stream() -> Iterator[dict[str, torch.Tensor]]:
            while True:
                yield from context.batches(tensors, shuffle=True, generator=gen)

        self._critic_stream = stream()
        self._critic_drawn = 0

    def resume_state(self) -> dict[str, Any]:
        return {**super().resume_state(), "critic_batches_drawn": self._critic_drawn}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Move the fresh critic-batch stream to where the interrupted run left it."""
        super().load_resume_state(state)
        if self._critic_stream is None:
            return
        while self._critic_drawn < int(state.get("critic_batches_drawn", 0)):
            next(self._critic_stream)
            self._critic_drawn += 1

    def critic_inputs(
        self, f: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """``(f_y, f_zs, groups)`` for one critic step, detached: this batch's features ``f``
        (``critic_batches: same``, or no stream, e.g. outside the runner), else a new training
        batch through the encoder as it is now (the official regime)."""
        if self._critic_stream is None:
            f_y, f_zs = self.split(f.detach().float())
            return f_y, f_zs, self.mine_groups(batch)
        fresh = next(self._critic_stream)
        self._critic_drawn += 1
        with torch.no_grad():
            f_y, f_zs = self.split(self.model.features(fresh["x"]).float())
        return f_y, f_zs, self.mine_groups(fresh)

    # -- the training critic's value, for the accounting -----------------------------------------
    def critic_pairs(
        self, f_y: torch.Tensor, f_zs: list[torch.Tensor]
    ) -> list[tuple[str, MINE, torch.Tensor, torch.Tensor]]:
        """``(target, critic, a, b)``: what each training critic scores (subclasses)."""
        return []

    @torch.no_grad()
    def penalty_rows(self, val: dict[str, np.ndarray], seed: int) -> list[dict]:
        """``mi_training_critic``: the training critic(s), frozen, on val batches of 128 (with
        the stochastic encoder's noise where it has one)."""
        gen = torch.Generator().manual_seed(seed)
        blocks = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in val.items()}
        sigma = float(self.hparams["stochastic_sigma"])
        if sigma > 0:
            blocks = {k: v + sigma * torch.randn(v.shape, generator=gen) for k, v in blocks.items()}
        n = len(blocks["f_y"])
        if n < 2:
            return []
        was = self.training
        self.eval()
        values: dict[str, list[float]] = {}
        for _ in range(8):
            i = torch.randperm(n, generator=gen)[:128]
            f_zs = [blocks[f"f_{a}"][i] for a in self.split_attrs]
            for target, critic, a, b in self.critic_pairs(blocks["f_y"][i], f_zs):
                values.setdefault(target, []).append(critic.lower_bound(a, b).item())
        self.train(was)
        return [
            {
                "split": "val",
                "target": t,
                "metric": "mi_training_critic",
                "value": float(np.mean(v)),
            }
            for t, v in values.items()
        ]

    def mine_groups(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The class labels that pair the marginal samples when ``mi_given_y`` is on, else None."""
        return batch["y"] if self.hparams["mi_given_y"] else None

    def penalty_blocks(self, f_zs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The confounder blocks as the MI term sees them: detached with ``mi_detach_z``."""
        return [fz.detach() for fz in f_zs] if self.hparams["mi_detach_z"] else f_zs

    def mine_optimizer(self, mines: nn.ModuleList) -> torch.optim.Optimizer:
        return torch.optim.Adam(mines.parameters(), lr=float(self.hparams["mine_lr"]))

    def penalised_step(self, task_loss: torch.Tensor, penalty: torch.Tensor) -> float:
        """One optimiser step on ``task_loss + penalty``; with ``mi_grad_clip`` the penalty's
        gradient is first scaled to at most the task gradient's norm on the encoder (the other
        parameters get the same scale). Returns the scale (1 without clipping)."""
        if not self.hparams["mi_grad_clip"]:
            self.step(task_loss + penalty)
            return 1.0
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        g_task = torch.autograd.grad(task_loss, params, retain_graph=True, allow_unused=True)
        g_pen = torch.autograd.grad(penalty, params, allow_unused=True)
        encoder = {id(p) for p in self.model.encoder.parameters()}
        grads, scale = clip_penalty_gradients(
            list(g_task), list(g_pen), [id(p) in encoder for p in params]
        )
        self.optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.optimizer.step()
        return scale
