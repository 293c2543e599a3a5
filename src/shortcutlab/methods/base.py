"""The method contract, after DomainBed's ``Algorithm``: ``update(batch) -> losses``, ``predict``.

A method owns a model (``encoder`` + ``head``), its optimiser(s) and its loss; the runner owns the
loop, sampling, devices, autocast, checkpoints, model selection and evaluation, so a method file
reads like the paper's algorithm box.

``batch`` is a dict of tensors on the method's device:
``x`` float images in [0, 1] (B, C, H, W); ``y`` labels (B,); ``z`` attributes (B, k);
``g`` joint group ids of (y, z1..zk) (B,); ``idx`` row indices into the training split (B,).

The runner hands every hook one ``RunContext`` (below): the contract between ``experiment/`` and
the methods, implemented by ``experiment/context.py`` and, for unit tests, ``tests/_fake_context.py``
(checked against this protocol by ``tests/test_contract.py``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.data.grouping import Grouper
from shortcutlab.errors import ShortcutlabError
from shortcutlab.models import EncoderHeadModel
from shortcutlab.store.layout import RunLayout

Tensors = dict[str, torch.Tensor]


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _as_float(value: Any) -> float | None:
    """``value`` as a float: a number (not a bool) or a numeric string such as ``"1e-3"``
    (PyYAML reads ``1e-3`` without a dot as a string); None when it is neither."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Hparam:
    """One hyperparameter: its default, its type and a random-search draw (DomainBed's registry
    idea).

    ``type`` is ``bool``, ``int``, ``float``, ``str`` or ``list[float]`` (one number or a list of
    them, cycled by the method); left out, it is the default's type, so it must be given where
    the default is None or a list. ``choices`` restricts a string to a few values; ``nullable``
    allows None (always, when None is the default). ``coerce`` checks a configured value.
    """

    default: Any
    help: str = ""
    search: Any = None  # callable(numpy Generator) -> value, for sweeps
    type: Any = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type is None:
            if self.default is None or isinstance(self.default, (list, tuple, dict)):
                raise TypeError(
                    f"Hparam with default {self.default!r} needs type= (bool, int, float, str "
                    "or list[float])"
                )
            object.__setattr__(self, "type", type(self.default))
        if self.type not in _TYPE_NAMES and self.type != list[float]:
            raise TypeError(
                f"Hparam type {self.type!r} is not bool, int, float, str or list[float]"
            )
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.default is None:
            object.__setattr__(self, "nullable", True)
        self.coerce(self.default, "the default")  # a wrong default fails at import

    def describe(self) -> str:
        """The expected value in words: ``a number``, ``one of soft, hard``, ``... or null``."""
        if self.choices is not None:
            text = f"one of {', '.join(self.choices)}"
        elif self.type == list[float]:
            text = "a number or a list of numbers"
        else:
            text = _TYPE_NAMES[self.type]
        return f"{text} or null" if self.nullable else text

    @property
    def type_label(self) -> str:
        """The type in short, for listings: ``float``, ``list[float]``, ``soft|hard``, ``str?``
        (a trailing ``?``: null is allowed)."""
        if self.choices is not None:
            text = "|".join(self.choices)
        elif self.type == list[float]:
            text = "list[float]"
        else:
            text = self.type.__name__
        return f"{text}?" if self.nullable else text

    def coerce(self, value: Any, where: str) -> Any:
        """``value`` checked against the type: an int or a numeric string becomes a float where
        a float is expected (same number), one number a list of one where a list is; anything
        else of the wrong type raises a one-sentence ``ShortcutlabError`` naming ``where``."""
        if value is None:
            if self.nullable:
                return None
            return self._fail(value, where)
        if self.type == list[float]:
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            out = [_as_float(v) for v in items]
            if not items or any(v is None for v in out):
                return self._fail(value, where)
            return out
        if self.type is float:
            out = _as_float(value)
        elif self.type is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            out = int(value) if ok else None
        elif self.type is bool:
            out = bool(value) if isinstance(value, (bool, np.bool_)) else None
        else:
            out = value if isinstance(value, str) else None
        if out is None or (self.choices is not None and out not in self.choices):
            return self._fail(value, where)
        return out

    def _fail(self, value: Any, where: str) -> NoReturn:
        raise ShortcutlabError(f"{where} must be {self.describe()}, not {value!r}")


@dataclass
class TaskInfo:
    """What a method may know about the task before training; never any held-out labels."""

    num_classes: int
    attributes: list[str]
    attribute_cardinalities: list[int]
    in_channels: int = 1
    image_size: int = 64
    epochs: int = 10
    steps_per_epoch: int = 1
    # attribute -> original category name of each code, where the loader kept them
    attribute_values: dict[str, list[str]] = field(default_factory=dict)
    # where ROI masks come from for the methods that keep an ROI (``dataset.roi``)
    roi: str = "data"

    @property
    def grouper(self) -> Grouper:
        """The data's grouper (``data/grouping.py``): group ids and names of (y, z1..zk)."""
        return Grouper(
            self.num_classes,
            tuple(self.attributes),
            tuple(self.attribute_cardinalities),
            self.attribute_values,
        )

    @property
    def num_groups(self) -> int:
        return self.grouper.num_groups


EpochCallback = Callable[[int, dict[str, float]], None]  # (epoch, mean losses of the epoch)


@runtime_checkable
class RunContext(Protocol):
    """What the runner hands to a method's hooks; the whole of what a method may touch.

    Tensor dicts (CPU): ``x`` (uint8, N x C x H x W), ``y`` (N,), ``z`` (N, k), ``g`` (N,) group
    ids of the data's ``Grouper``, ``idx`` (N,) row numbers, and ``mask`` (N, H, W) ROI masks where
    the data has them.

    - ``train``: the training rows (after ``Method.training_data``: what is trained on);
      ``val``: the selection split (methods may score on it, never fit on it);
      ``holdout``: rows carved from the training split before training when the method sets
      ``holdout_fraction > 0`` (stratified by group; never the selection split), else None;
      ``unlabelled``: the split ``target_unlabelled`` of a domain-shift dataset, else None;
      domain-adaptation methods may use its images, not its labels (only the oracle does).
    - ``device``, ``seed``, ``batch_size``, ``info``; ``layout``: the run's files and figure
      paths (``store/layout.py``); ``samples_seen``: images passed through a training step so
      far (a method that trains outside ``fit`` adds its own); ``progress(stage, done, total)``:
      a progress display for a method's long steps outside ``fit`` (fitting a generator,
      generating images), or None.
    - ``batches(tensors, shuffle, weights, batch_size, generator)`` yields device batches in the
      ``update`` format (``x`` as float in [0, 1]); ``weights`` (N,) draws N rows with
      replacement.
    - ``fit(method, epochs, tensors=None, on_epoch=None, seed=None)``: the one training loop
      (the runner trains the main method with it too); for a helper model (JTT's first stage, a
      distillation teacher) call it with the defaults.
    - ``predict(method, tensors)``: logits (N, C) on CPU, eval mode;
      ``features(method, tensors)``: the named feature blocks as numpy arrays.
    """

    train: Tensors
    val: Tensors
    holdout: Tensors | None
    unlabelled: Tensors | None
    device: torch.device
    seed: int
    batch_size: int
    info: TaskInfo
    layout: RunLayout
    samples_seen: int
    progress: Callable[[str, int, int], None] | None

    def autocast(self) -> AbstractContextManager: ...

    def batches(
        self,
        tensors: Tensors,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensors]: ...

    def fit(
        self,
        method: Method,
        epochs: int,
        tensors: Tensors | None = None,
        on_epoch: EpochCallback | None = None,
        seed: int | None = None,
    ) -> dict[str, float]: ...

    def predict(self, method: Method, tensors: Tensors) -> torch.Tensor: ...

    def features(self, method: Method, tensors: Tensors) -> dict[str, np.ndarray]: ...


# Hyperparameters every method has; values come from the config's ``train`` section.
COMMON_HPARAMS: dict[str, Hparam] = {
    "lr": Hparam(1e-3, "AdamW learning rate", lambda r: float(10 ** r.uniform(-4.5, -2.5))),
    "weight_decay": Hparam(1e-4, "AdamW weight decay", lambda r: float(10 ** r.uniform(-6, -2))),
}


class Method(nn.Module):
    """Base class: plain empirical risk minimisation lives in ``ERM``; others override pieces."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    HPARAMS: ClassVar[dict[str, Hparam]] = {}
    # "uniform": shuffled batches; "group_balanced": every (y, z) cell equally likely per draw.
    sampling: ClassVar[str] = "uniform"
    # fraction of the training split carved off before training into ``context.holdout``
    # (DFR's and SWiFT's small external set); 0 keeps all training data for training.
    holdout_fraction: ClassVar[float] = 0.0
    # True where the objective or the sampling is per (y, z1..zk) group (GroupDRO's weights,
    # group-balanced batches or heads): the runner refuses a training split that lacks a group
    # (``data.grouping.empty_train_groups``); other methods run with a warning.
    needs_every_group: ClassVar[bool] = False

    @classmethod
    def encoder_dim(cls, info: TaskInfo, hparams: dict[str, Any]) -> int | None:
        """Feature size this method needs from the encoder (None: the backbone default)."""
        return None

    def __init__(self, model: EncoderHeadModel, info: TaskInfo, hparams: dict[str, Any]):
        super().__init__()
        self.model = model
        self.info = info
        self.hparams = dict(hparams)
        self._optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def hparam_defaults(cls) -> dict[str, Any]:
        spec = {**COMMON_HPARAMS, **cls.HPARAMS}
        return {k: v.default for k, v in spec.items()}

    @classmethod
    def hparam_spec(cls) -> dict[str, Hparam]:
        return {**COMMON_HPARAMS, **cls.HPARAMS}

    # -- optimisation -------------------------------------------------------------------------
    def make_optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            params,
            lr=self.hparams["lr"] if lr is None else lr,
            weight_decay=self.hparams["weight_decay"],
        )

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = self.make_optimizer(self.model.parameters())
        return self._optimizer

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    # -- the contract ---------------------------------------------------------------------------
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes)."""
        return self.model(x)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named feature blocks for probes: ``{"f": all}``; split methods add ``f_y``, ``f_<attr>``."""
        return {"f": self.model.features(x)}

    def predict_with_features(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(predict(x), features(x))``, from one encoder pass where the method keeps this base
        class's ``predict`` and ``features`` on a ``head(encoder(x))`` model (the same numbers;
        evaluation asks for both on every split)."""
        from shortcutlab.models.backbones import EncoderHeadModel

        plain = type(self).predict is Method.predict and type(self).features is Method.features
        if plain and isinstance(self.model, EncoderHeadModel):
            f = self.model.encoder(x)
            return self.model.head(f), {"f": f}
        return self.predict(x), self.features(x)

    # -- optional hooks (two-stage methods such as JTT, DFR, SWiFT) ------------------------------
    def on_train_start(self, context: RunContext) -> None:  # noqa: B027 - optional hook
        """Called once before the first epoch with the runner's context."""

    def training_data(self, context: RunContext) -> Tensors:
        """The tensors to train on, asked once after ``on_train_start``: ``context.train`` unless
        the method adds rows (generated images) or keeps a subset (the oracle). Return new
        tensors with the same keys; the runner's batches and sampling weights follow them."""
        return context.train

    def on_epoch_end(self, epoch: int, context: RunContext) -> None:  # noqa: B027 - optional hook
        """Called after every epoch (e.g. DLS schedules)."""

    def on_train_end(self, context: RunContext) -> None:  # noqa: B027 - optional hook
        """Called after model selection restored the chosen weights."""

    # -- epoch checkpoints (``resume.pt``, experiment/runner.py; docs/contracts.md) -------------
    def resume_state(self) -> dict[str, Any]:
        """What the next epoch needs beyond ``state_dict()`` and the optimisers (counters,
        positions in the method's own batch streams); saved with every epoch checkpoint."""
        return {}

    def load_resume_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore ``resume_state()``; called after ``on_train_start`` and ``training_data``
        when an interrupted run continues from its epoch checkpoint."""

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def weighted_ce(
        logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None
    ) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), y, reduction="none")
        if w is None:
            return loss.mean()
        return (loss * w).sum() / w.sum().clamp_min(1e-12)
