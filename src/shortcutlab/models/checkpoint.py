"""The run checkpoint: one type that saves and loads it (docs/contracts.md, "Checkpoints").

``Checkpoint.save`` writes a plain dict of tensors, numbers, strings, lists and dicts tagged
``format: shortcutlab-checkpoint/1``; ``Checkpoint.load`` reads it back with
``torch.load(weights_only=True)`` (never the full unpickler, so a checkpoint cannot run code) and
refuses any other format with one sentence. ``load_trained_model`` rebuilds the trained
``EncoderHeadModel`` for distillation teachers (``kd``, ``groupdistil``) and the post-hoc
commands (``debias``, ``audit``); it also takes a bare ``state_dict`` of an ``EncoderHeadModel``
(a teacher trained elsewhere), with the backbone named by the caller.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.models.backbones import EncoderHeadModel, build_model

CHECKPOINT_FORMAT = "shortcutlab-checkpoint/1"


@dataclass
class Checkpoint:
    """Everything a finished run keeps of its model, and how it was made."""

    method: str  # registry name
    name: str  # the config's label of the method
    hparams: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    method_state: dict[str, torch.Tensor]
    info: dict[str, Any]  # TaskInfo fields
    feature_dim: int
    train: dict[str, Any]  # the config's train section
    dataset: dict[str, Any]  # the config's dataset section
    seed: int
    selected_epoch: int
    selection: dict[str, Any]  # {"rule": ..., "score": ...}
    compute: dict[str, Any]  # seconds, train_seconds, samples
    swift: dict[str, Any] | None = None  # written by ``debias``
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def backbone(self) -> str:
        return str(self.train.get("backbone", "small-cnn"))

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"format": CHECKPOINT_FORMAT, **asdict(self)}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        data = _read(path)
        if not isinstance(data, Mapping) or data.get("format") != CHECKPOINT_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else None
            raise ShortcutlabError(
                f"'{path}' is not a shortcutlab checkpoint (format {found!r}, expected "
                f"'{CHECKPOINT_FORMAT}'); give the checkpoint.pt of a run."
            )
        fields = set(cls.__dataclass_fields__)
        missing = sorted(f for f in fields - {"swift", "extra"} if f not in data)
        if missing:
            raise ShortcutlabError(f"checkpoint '{path}' lacks {', '.join(missing)}.")
        return cls(**{k: v for k, v in data.items() if k in fields})


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ShortcutlabError(
            f"'{path}' is not a checkpoint that loads without unpickling code (a torch file of "
            "tensors, numbers, strings, lists and dicts)."
        ) from None


def _task_block_head_as_linear(state: dict, feature_dim: int) -> dict:
    """A feature-split model (dcor, mimm, mimmx) has a task head on the block ``f_y`` = the
    first ``dy`` features; as a plain linear head on all features it has zero weights on the
    confounder blocks, which gives the same logits."""
    weight = state.pop("head.linear.weight")
    bias = state.pop("head.linear.bias")
    full = torch.zeros(weight.shape[0], int(feature_dim), dtype=weight.dtype)
    full[:, : weight.shape[1]] = weight
    return {**state, "head.weight": full, "head.bias": bias}


def load_trained_model(
    path: str | Path, info: Any, default_backbone: str = "small-cnn"
) -> EncoderHeadModel:
    """The trained ``EncoderHeadModel`` of a run checkpoint, or of a bare ``state_dict``.

    A run checkpoint names its backbone; a bare state dict (every value a tensor, keys of an
    ``EncoderHeadModel``) is built on ``default_backbone``. The feature size comes from the head.
    ``info`` is the task's ``TaskInfo`` (``num_classes``, ``in_channels``, ``image_size``).
    """
    data = _read(path)
    hparams: Mapping[str, Any] = {}
    if isinstance(data, Mapping) and "format" in data:
        ckpt = Checkpoint.load(path)
        state, backbone, feature_dim = dict(ckpt.model_state), ckpt.backbone, ckpt.feature_dim
        hparams = ckpt.hparams or {}
    elif isinstance(data, Mapping) and data and all(torch.is_tensor(v) for v in data.values()):
        state, backbone, feature_dim = dict(data), default_backbone, None
    else:
        raise ShortcutlabError(
            f"'{path}' is neither a shortcutlab checkpoint nor a model state dict."
        )
    # the encoder and the task head; other modules of a method's model (confounder heads) go
    state = {k: v for k, v in state.items() if k.startswith(("encoder.", "head."))}
    if "head.linear.weight" in state:
        if feature_dim is None:
            raise ShortcutlabError(f"'{path}' has a block head but no feature size; use a run's.")
        state = _task_block_head_as_linear(state, feature_dim)
    if "head.weight" not in state:
        raise ShortcutlabError(f"checkpoint '{path}' has no linear head ('head.weight').")
    num_classes, feature_dim = state["head.weight"].shape
    if num_classes != info.num_classes:
        raise ShortcutlabError(
            f"checkpoint '{path}' predicts {num_classes} classes, the task has {info.num_classes}."
        )
    model = build_model(str(backbone), info.in_channels, num_classes, info.image_size, feature_dim)
    if "final_relu" in hparams:  # a split method's encoder (docs/methods.md, "The feature blocks")
        from shortcutlab.methods.feature_split import split_encoder_output

        split_encoder_output(model, hparams)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ShortcutlabError(
            f"checkpoint '{path}' does not fit backbone '{backbone}': {str(err).splitlines()[0]}"
        ) from None
    return model
