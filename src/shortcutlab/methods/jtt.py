"""JTT, Just Train Twice (Liu et al., ICML 2021, Algorithm 1).

Stage 1: train an identification model with ERM for ``jtt_epochs`` (in ``on_train_start``, via
``context.fit``) and collect the error set ``E`` of training examples it misclassifies.
Stage 2: train the final model with ERM in which every example of ``E`` counts ``lambda_up``
times; here through per-example loss weights looked up by ``batch["idx"]`` (the paper upsamples
``E``; weighting the loss is the same objective in expectation). The identification model starts
from a copy of the final model's initial weights (our choice).
"""

from __future__ import annotations

import copy

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Hparam, Method, RunContext
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register


def upweight_vector(errors: torch.Tensor, lambda_up: float) -> torch.Tensor:
    """Per-example weights of JTT stage 2: ``lambda_up`` for the error set, 1 elsewhere."""
    errors = torch.as_tensor(errors, dtype=torch.bool)
    return torch.where(errors, torch.tensor(float(lambda_up)), torch.tensor(1.0))


def weights_by_index(idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A lookup table ``table[idx[i]] = weights[i]`` (rows not listed weigh 1)."""
    table = torch.ones(int(idx.max()) + 1 if len(idx) else 0)
    table[idx.long()] = weights.float()
    return table


@register
class JTT(Method):
    name = "jtt"
    summary = "just train twice: upweight the training errors of a short ERM run"
    HPARAMS = {
        "jtt_epochs": Hparam(
            2,
            "ERM epochs of the identification model (our default)",
            lambda r: int(r.choice([1, 2, 3])),
        ),
        "lambda_up": Hparam(
            20.0, "weight of the error set", lambda r: float(r.choice([5, 20, 50, 100]))
        ),
    }

    def __init__(self, model, info, hparams):
        super().__init__(model, info, hparams)
        self.example_weights: torch.Tensor | None = None
        self.num_errors = 0

    def on_train_start(self, context: RunContext) -> None:
        hp = {k: self.hparams[k] for k in ("lr", "weight_decay")}
        identifier = ERM(copy.deepcopy(self.model), self.info, hp).to(context.device)
        context.fit(identifier, int(self.hparams["jtt_epochs"]))
        logits = context.predict(identifier, context.train)
        errors = logits.argmax(1) != context.train["y"]
        self.num_errors = int(errors.sum())
        weights = upweight_vector(errors, self.hparams["lambda_up"])
        self.example_weights = weights_by_index(context.train["idx"], weights).to(context.device)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        if self.example_weights is None:
            raise ShortcutlabError("jtt runs through the runner, which finds the error set first.")
        w = self.example_weights.to(batch["y"].device)[batch["idx"]]
        loss = self.weighted_ce(self.predict(batch["x"]), batch["y"], w)
        self.step(loss)
        return {"loss": loss.item(), "error_fraction": float((w > 1).float().mean())}
