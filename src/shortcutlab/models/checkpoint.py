"""Rebuild an ``EncoderHeadModel`` from a checkpoint written by the runner (or close to it).

One tolerant function shared by distillation teachers (``kd``, ``groupdistil``) and the post-hoc
commands (``debias``, ``audit``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.models.backbones import EncoderHeadModel, build_model


def _find_key(tree: Any, key: str) -> Any:
    """First value stored under ``key`` anywhere in nested dicts/objects (tolerant config read)."""
    if isinstance(tree, Mapping):
        if key in tree:
            return tree[key]
        children = list(tree.values())
    elif hasattr(tree, "__dict__"):
        return _find_key(vars(tree), key)
    else:
        return None
    for child in children:
        found = _find_key(child, key)
        if found is not None:
            return found
    return None


def read_checkpoint(path: str | Path) -> Any:
    """The object stored in a checkpoint file (a dict for the runner's), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"checkpoint '{path}' does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # configs saved as objects need the full unpickler
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:
            raise ShortcutlabError(f"'{path}' is not a torch checkpoint file.") from None


def _task_block_head_as_linear(state: dict, ckpt: Any, path: str | Path) -> dict:
    """A feature-split model (dcor, mimm, mimmx) has a task head on the block ``f_y`` = the
    first ``dy`` features; as a plain linear head on all features it has zero weights on the
    confounder blocks, which gives the same logits."""
    feature_dim = ckpt.get("feature_dim") if isinstance(ckpt, Mapping) else None
    if feature_dim is None:
        raise ShortcutlabError(
            f"checkpoint '{path}' has a block head but no 'feature_dim'; re-run it with this "
            "version of shortcutlab."
        )
    weight = state.pop("head.linear.weight")
    bias = state.pop("head.linear.bias")
    full = torch.zeros(weight.shape[0], int(feature_dim), dtype=weight.dtype)
    full[:, : weight.shape[1]] = weight
    return {**state, "head.weight": full, "head.bias": bias}


def load_trained_model(
    path: str | Path, info: Any, default_backbone: str = "small-cnn"
) -> EncoderHeadModel:
    """Rebuild a trained model from a runner checkpoint (``model_state`` and ``train``/``config``).

    Tolerant of the layout: a bare state dict is accepted, keys may carry a ``model.`` prefix
    (a method's state dict), extra entries (GroupDRO's ``q``) are ignored, the backbone is read
    from anywhere outside the weights (else ``default_backbone``) and the feature size from the head.
    ``info`` is the task's ``TaskInfo`` (``num_classes``, ``in_channels``, ``image_size``).
    """
    ckpt = read_checkpoint(path)
    state = ckpt.get("model_state", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise ShortcutlabError(f"checkpoint '{path}' holds no model state.")
    # everything but the weights: the runner's ``train`` section, a ``config``, ...
    config = {k: v for k, v in ckpt.items() if k not in ("model_state", "method_state")}
    state = {(k[6:] if k.startswith("model.") else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.startswith(("encoder.", "head."))}
    if "head.linear.weight" in state:
        state = _task_block_head_as_linear(state, ckpt, path)
    if "head.weight" not in state:
        raise ShortcutlabError(f"checkpoint '{path}' has no linear head ('head.weight').")
    backbone = _find_key(config, "backbone") or default_backbone
    num_classes, feature_dim = state["head.weight"].shape
    if num_classes != info.num_classes:
        raise ShortcutlabError(
            f"checkpoint '{path}' predicts {num_classes} classes, the task has {info.num_classes}."
        )
    model = build_model(str(backbone), info.in_channels, num_classes, info.image_size, feature_dim)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ShortcutlabError(
            f"checkpoint '{path}' does not fit backbone '{backbone}': {str(err).splitlines()[0]}"
        ) from None
    return model
