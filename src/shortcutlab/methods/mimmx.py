"""MIMM-X (Fay et al., MICCAI FAIMI 2025): MI minimisation against k confounders at once.

Encoder output ``f = [f_y, f_z1, ..., f_zk]``, one head per target. Per ``update``:

- Confounder Attention Weighter (CAW), our choice as in methods.md: ``a = softmax(w)``.
  ``caw_mode: concat`` (default) estimates ``MINE(f_y, [a_1 f_z1, ..., a_k f_zk])``;
  ``caw_mode: pairwise`` uses one MINE per pair and ``sum_i a_i MINE_i(f_y, f_zi)``.
  Direction (our choice): ``w`` is learned jointly with the heads but *ascends* the MI term
  (a gradient-reversal on ``a``), so attention moves toward the confounder that carries the most
  information about ``f_y`` while the encoder minimises the same term. Trained to minimise it,
  ``a`` would collapse onto the least informative confounder and switch the penalty off.
  ``caw: false`` (ablation) fixes ``a = 1/k``.
- Dynamic Loss Scaling (DLS): ``gamma_i = (L_i / mean_j L_j) ** alpha_i`` over the k + 1 head
  losses, from detached losses (our choice), ``alpha_0 = alpha_Y + (epoch / N_epoch) * beta_Y``
  for the task and ``alpha_Z`` for each confounder; ``dls: false`` (ablation) gives ``gamma = 1``.
- ``L = gamma_0 L_0 + sum_i gamma_i L_i + lambda * MI``, one encoder/heads/CAW step, then
  ``N_B - 1`` MINE steps maximising the bound on detached features (and detached ``a``).

``mi_given_y`` (our choice, default off): the marginal pairs of every MINE bound are drawn
within a class, so the term is ``I(f_y; f_z | y)``: at P(z = y) = 0.9, ``I(f_y; f_z)`` cannot
reach 0 while ``f_y`` predicts ``y``, the conditional term can (docs/RESULTS.md).

``warmup_epochs`` (our choice, default 0 = the paper): for the first epochs the encoder step
uses the task loss alone (no confounder heads, no MI term), so ``f_y`` learns the task before
the confounder heads make sex, scanner etc. salient in the shared encoder; the statistics
network(s) still take their ``N_B - 1`` steps, so the critic is trained when the term switches on.

Defaults are the paper's brain-MRI settings: N_B 6, alpha_Y 0.3, alpha_Z 0.8, beta_Y 0.01,
lambda 1.5.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Hparam, RunContext
from shortcutlab.methods.feature_split import MINEPenaltyMethod
from shortcutlab.methods.registry import register


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


def dls_gammas(losses: list[float], alphas: list[float]) -> list[float]:
    """DLS weights ``(L_i / mean_j L_j) ** alpha_i`` (MIMM-X); ones if the mean loss is not positive."""
    mean = sum(losses) / len(losses)
    if not mean > 0:
        return [1.0] * len(losses)
    return [(max(v, 0.0) / mean) ** a for v, a in zip(losses, alphas, strict=True)]


@register
class MIMMX(MINEPenaltyMethod):
    name = "mimmx"
    summary = (
        "MIMM for k confounders with confounder attention (CAW) and dynamic loss scaling (DLS)"
    )
    HPARAMS = {
        **MINEPenaltyMethod.HPARAMS,
        "lambda": Hparam(1.5, "weight of the MI term"),
        "alpha_y": Hparam(0.3, "DLS exponent of the task loss at epoch 0 (alpha_Y_initial)"),
        "alpha_z": Hparam(0.8, "DLS exponent of every confounder loss"),
        "beta_y": Hparam(0.01, "growth of alpha_Y over training: + (epoch / N_epoch) * beta_Y"),
        "dls": Hparam(True, "dynamic loss scaling; false gives gamma = 1 (ablation)"),
        "caw": Hparam(True, "confounder attention; false fixes a = 1/k (ablation)"),
        "caw_mode": Hparam(
            "concat",
            "concat: one MINE on [a_i f_zi]; pairwise: one MINE per f_zi",
            choices=("concat", "pairwise"),
        ),
        "caw_lr": Hparam(1e-2, "learning rate of the attention logits w (our choice)"),
        "warmup_epochs": Hparam(
            0,
            "our choice: epochs of task-only training (no confounder heads, no MI term) before "
            "the full loss; 0 = the paper",
        ),
    }

    def __init__(self, model, info, hparams: dict[str, Any]):
        super().__init__(model, info, hparams)
        mode = self.hparams["caw_mode"]
        if mode not in ("concat", "pairwise"):
            raise ShortcutlabError(f"caw_mode must be 'concat' or 'pairwise', got '{mode}'")
        k = len(self.split_attrs)
        dy, dz = int(self.hparams["f_y_dim"]), int(self.hparams["f_z_dim"])
        self.caw_logits = nn.Parameter(torch.zeros(k), requires_grad=bool(self.hparams["caw"]))
        if mode == "concat":
            self.mines = nn.ModuleList([self.build_mine(dy, k * dz)])
        else:
            self.mines = nn.ModuleList([self.build_mine(dy, dz) for _ in range(k)])
        self.mine_opt = self.mine_optimizer(self.mines)
        self.epoch = 0

    # -- CAW ------------------------------------------------------------------------------------
    def attention(self) -> torch.Tensor:
        """``a = softmax(w)`` over the k confounders (uniform and fixed when ``caw`` is off)."""
        return torch.softmax(self.caw_logits, 0)

    def mi_term(
        self,
        f_y: torch.Tensor,
        f_zs: list[torch.Tensor],
        a: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        f_y = f_y.float()
        if self.hparams["caw_mode"] == "concat":
            weighted = torch.cat([a[i] * fz.float() for i, fz in enumerate(f_zs)], 1)
            return self.mines[0].lower_bound(f_y, weighted, groups)
        terms = [
            a[i] * m.lower_bound(f_y, fz.float(), groups)
            for i, (m, fz) in enumerate(zip(self.mines, f_zs, strict=True))
        ]
        return torch.stack(terms).sum()

    def critic_pairs(self, f_y, f_zs):
        a = self.attention().detach()
        if self.hparams["caw_mode"] == "concat":
            weighted = torch.cat([a[i] * fz for i, fz in enumerate(f_zs)], 1)
            return [("all", self.mines[0], f_y, weighted)]
        return list(zip(self.split_attrs, self.mines, [f_y] * len(f_zs), f_zs, strict=True))

    def mine_steps(
        self,
        f: torch.Tensor,
        batch: dict[str, torch.Tensor],
        a: torch.Tensor,
    ) -> list[float]:
        """``N_B - 1`` maximisation steps of the statistics network(s) on detached inputs
        (``critic_inputs``: this batch's features or fresh batches)."""
        a = a.detach()
        values = []
        for _ in range(int(self.hparams["n_b"]) - 1):
            f_y, f_zs, groups = self.critic_inputs(f, batch)
            if self.hparams["caw_mode"] == "concat":
                weighted = torch.cat([a[i] * fz for i, fz in enumerate(f_zs)], 1)
                values.append(self.mines[0].maximise_step(f_y, weighted, self.mine_opt, groups))
            else:
                self.mine_opt.zero_grad(set_to_none=True)
                total, value = 0.0, 0.0
                for m, fz in zip(self.mines, f_zs, strict=True):
                    objective, v = m.training_objective(f_y, fz, groups)
                    total = total - objective
                    value += v
                total.backward()
                self.mine_opt.step()
                values.append(value / len(f_zs))
        return values

    # -- DLS ------------------------------------------------------------------------------------
    def alpha_y(self, epoch: int | None = None) -> float:
        """``alpha_Y = alpha_Y_initial + (epoch / N_epoch) * beta_Y``."""
        epoch = self.epoch if epoch is None else epoch
        n_epochs = max(int(self.info.epochs), 1)
        return float(self.hparams["alpha_y"]) + epoch / n_epochs * float(self.hparams["beta_y"])

    def gammas(self, losses: list[float]) -> list[float]:
        if not self.hparams["dls"]:
            return [1.0] * len(losses)
        alphas = [self.alpha_y()] + [float(self.hparams["alpha_z"])] * (len(losses) - 1)
        return dls_gammas(losses, alphas)

    def on_epoch_end(self, epoch: int, context: RunContext) -> None:
        """The runner calls this after (0-based) ``epoch``; the next epoch is ``epoch + 1``."""
        super().on_epoch_end(epoch, context)
        self.epoch = epoch + 1

    def resume_state(self) -> dict[str, Any]:
        return {**super().resume_state(), "epoch": self.epoch}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """The DLS schedule and the warm-up continue from the checkpoint's next epoch."""
        super().load_resume_state(state)
        self.epoch = int(state.get("epoch", self.epoch))

    # -- optimisation ---------------------------------------------------------------------------
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            opt = self.make_optimizer(self.trainable_parameters())
            if self.hparams["caw"]:
                opt.add_param_group(
                    {
                        "params": [self.caw_logits],
                        "lr": float(self.hparams["caw_lr"]),
                        "weight_decay": 0.0,
                    }
                )
            self._optimizer = opt
        return self._optimizer

    def warming_up(self) -> bool:
        return self.epoch < int(self.hparams["warmup_epochs"])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        f = self.model.features(batch["x"])
        ce_y, ce_z = self.head_losses(f, batch)
        losses = [ce_y, *ce_z]
        warmup = self.warming_up()
        gammas = [1.0] * len(losses) if warmup else self.gammas([v.item() for v in losses])
        f_y, f_zs = self.split(f)
        a = self.attention()
        groups = self.mine_groups(batch)
        if warmup:  # task loss alone; the MI value is logged, not optimised
            with torch.no_grad():
                mi = self.mi_term(f_y, f_zs, a, groups)
            loss = ce_y
            self.step(ce_y)
            scale = 1.0
        else:
            a_pen = _ReverseGrad.apply(a) if self.hparams["caw"] else a
            mi = self.mi_term(f_y, self.penalty_blocks(f_zs), a_pen, groups)
            heads = sum(g * v for g, v in zip(gammas, losses, strict=True))
            penalty = float(self.hparams["lambda"]) * mi
            loss = heads + penalty
            scale = self.penalised_step(heads, penalty)
        bound = self.mine_steps(f, batch, a)
        out = {"loss": loss.item(), "ce_y": ce_y.item(), "mi": mi.item(), "warmup": float(warmup)}
        out["mi_mine_steps"] = sum(bound) / len(bound) if bound else mi.item()
        for i, attr in enumerate(self.split_attrs):
            out[f"ce_{attr}"] = ce_z[i].item()
            out[f"gamma_{attr}"] = gammas[i + 1]
            out[f"caw_{attr}"] = a[i].item()
        out["gamma_y"] = gammas[0]
        out["mi_grad_scale"] = scale
        return out
