"""Knowledge distillation (Hinton et al. 2015) from a teacher into the method's (smaller) model.

Per example ``(1 - alpha) CE(s, y) + alpha * tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.
The teacher comes from ``teacher_checkpoint`` (a file written by the runner) or, without one, is
trained first in ``on_train_start`` with ``context.fit`` (ERM on ``teacher_backbone``, MONAI's
ResNet-18 by default). The teacher is frozen and is not part of the method's state, so the run's
checkpoint holds the student only. When a run context is available the teacher's logits on the
training split are computed once and looked up by ``batch["idx"]`` (our choice: offline
distillation, one teacher pass instead of one per epoch); otherwise the teacher runs per batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Hparam, Method, RunContext, TaskInfo
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register
from shortcutlab.models import EncoderHeadModel, build_model
from shortcutlab.models.checkpoint import load_trained_model


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, alpha: float, tau: float
) -> torch.Tensor:
    """Per-example ``(1 - alpha) CE(s, y) + alpha tau^2 KL(softmax(t/tau) || softmax(s/tau))``."""
    student, teacher = student.float(), teacher.float().detach()
    ce = F.cross_entropy(student, y, reduction="none")
    log_pt = F.log_softmax(teacher / tau, dim=1)
    log_ps = F.log_softmax(student / tau, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(dim=1)
    return (1.0 - alpha) * ce + alpha * tau**2 * kl


@register
class KD(Method):
    name = "kd"
    summary = "knowledge distillation from a (larger) teacher into the student"
    HPARAMS = {
        "alpha": Hparam(
            0.5, "weight of the distillation term", lambda r: float(r.uniform(0.1, 0.9))
        ),
        "tau": Hparam(4.0, "softmax temperature", lambda r: float(r.choice([1.0, 2.0, 4.0, 8.0]))),
        "teacher_checkpoint": Hparam(None, "path to a trained teacher's checkpoint", type=str),
        "teacher_backbone": Hparam("resnet18", "backbone of a teacher trained in on_train_start"),
        "teacher_epochs": Hparam(None, "epochs of that teacher (None: the run's epochs)", type=int),
    }

    def __init__(self, model: EncoderHeadModel, info: TaskInfo, hparams: dict[str, Any]):
        super().__init__(model, info, hparams)
        self.set_teacher(None)
        self._teacher_logits: torch.Tensor | None = None

    # The teacher is kept outside the module tree: not trained, not checkpointed.
    def set_teacher(self, teacher: EncoderHeadModel | None) -> None:
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher)

    @property
    def teacher(self) -> EncoderHeadModel | None:
        return self._teacher

    def on_train_start(self, context: RunContext) -> None:
        hp = {k: self.hparams[k] for k in ("lr", "weight_decay")}
        path = self.hparams.get("teacher_checkpoint")
        if path:
            helper = ERM(
                load_trained_model(path, self.info, self.hparams["teacher_backbone"]), self.info, hp
            )
            helper.to(context.device)
        else:
            teacher = build_model(
                self.hparams["teacher_backbone"],
                self.info.in_channels,
                self.info.num_classes,
                self.info.image_size,
            )
            helper = ERM(teacher, self.info, hp).to(context.device)
            context.fit(helper, self.hparams.get("teacher_epochs") or self.info.epochs)
        helper.eval()
        logits = context.predict(helper, context.train)
        self.set_teacher(helper.model)
        idx = context.train["idx"].long()
        cache = torch.zeros(int(idx.max()) + 1, logits.shape[1])
        cache[idx] = logits.float().cpu()
        self._teacher_logits = cache

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._teacher_logits is not None and "idx" in batch:
            return self._teacher_logits[batch["idx"].cpu()].to(batch["x"].device)
        if self.teacher is None:
            raise ShortcutlabError(
                "distillation needs a teacher: set teacher_checkpoint or run it."
            )
        with torch.no_grad():
            return self.teacher.to(batch["x"].device)(batch["x"])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        losses = distillation_loss(
            self.predict(batch["x"]),
            self.teacher_logits(batch),
            batch["y"],
            self.hparams["alpha"],
            self.hparams["tau"],
        )
        loss = losses.mean()
        self.step(loss)
        return {"loss": loss.item()}
