"""Shared machinery of the representation-level methods (dCor, MIMM, MIMM-X).

The encoder output is split into named blocks ``f = [f_y, f_<attr_1>, ..., f_<attr_k>]``
(Fay et al. 2023, 2025): a head classifies ``y`` from ``f_y`` only, one head per attribute
classifies it from its own block. The model's ``head`` becomes a ``BlockHead`` on ``f_y``, so
``model(x)``, ``predict`` and post-hoc methods see the task head; the block sizes are
hyperparameters (our choice: ``f_y`` 32, each ``f_z`` 16) and ``encoder_dim`` returns the total.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.estimators.mine import MINE
from shortcutlab.methods.base import Hparam, Method, TaskInfo
from shortcutlab.models import EncoderHeadModel


class BlockHead(nn.Module):
    """A linear head that reads only the feature slice ``[start, stop)``."""

    def __init__(self, start: int, stop: int, out_features: int):
        super().__init__()
        self.start, self.stop = start, stop
        self.linear = nn.Linear(stop - start, out_features)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f[:, self.start : self.stop])


BLOCK_HPARAMS: dict[str, Hparam] = {
    "f_y_dim": Hparam(32, "size of the task block f_y (our choice)"),
    "f_z_dim": Hparam(16, "size of each confounder block f_<attr> (our choice)"),
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

    def build_mine(self, dim_a: int, dim_b: int) -> MINE:
        alpha = float(self.hparams["mine_ema_alpha"])
        return MINE(dim_a, dim_b, int(self.hparams["mine_hidden"]), ema_alpha=alpha or None)

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
