"""``train.pretrained``: ImageNet or domain weights from a local file into MONAI's networks.

Nothing here downloads: the file is the user's (``torch.save`` of a state dict, read with
``torch.load(weights_only=True)``, never the full unpickler; or ``.safetensors`` when the
``safetensors`` package is installed). Accepted key layouts, for the backbones ``densenet121``,
``resnet18`` and ``resnet50``:

- torchvision's: DenseNet-121 (``features.conv0.weight``, ``features.denseblock1.denselayer1.
  norm1.weight`` or the older ``...denselayer1.norm.1.weight`` of the hub files,
  ``features.transition1.*``, ``features.norm5.*``, ``classifier.*``) and ResNet-18/50
  (``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``,
  ``fc.*``). A DenseNet layer's ``norm1``/``conv1``/``norm2``/``conv2`` sit under ``layers.`` in
  MONAI (the same renaming as MONAI's own ``pretrained=True`` path, ``densenet._load_state_dict``);
  ResNet names are MONAI's already. torchvision's downsampling conv has no bias; our ``resnet18``
  has one (MONAI's default) and gets zeros, which computes the same function.
- MONAI's: ``state_dict()`` of the MONAI network, also nested under a prefix: our encoder's
  (``0.``, with the projection to ``feature_dim``), an ``EncoderHeadModel``'s (``encoder.0.``),
  ``module.`` (DataParallel), or a shortcutlab run checkpoint (its ``model_state``, read with
  ``Checkpoint``).

Only the network itself is loaded: the classifier (``classifier.*``, ``fc.*``,
``class_layers.*``), our projection to ``feature_dim``, the head and anything outside the network's
prefix are new layers and keep their initialisation. Every weight and buffer of the network must
come from the file (``num_batches_tracked`` counters may be absent: the hub files predate them);
missing and unexpected keys and shape mismatches are reported together in one sentence.

Grayscale images with RGB weights: the first convolution's weights are summed over the 3 input
channels, the usual adaptation (a gray image ``g`` repeated as RGB gives the same response as
``g`` through the summed kernel). Any other channel mismatch is an error.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError

# backbone -> (its first convolution, a regex whose group 1 is the prefix of the network's keys)
_LAYOUTS: dict[str, tuple[str, re.Pattern[str]]] = {
    "densenet121": (
        "features.conv0.weight",
        re.compile(r"^((?:[^.]+\.)*?)features\.(?:conv0|norm0|denseblock\d|transition\d|norm5)\."),
    ),
    "resnet18": ("conv1.weight", re.compile(r"^((?:[^.]+\.)*?)(?:conv1|bn1|layer[1-4])\.")),
    "resnet50": ("conv1.weight", re.compile(r"^((?:[^.]+\.)*?)(?:conv1|bn1|layer[1-4])\.")),
}
PRETRAINED_BACKBONES = tuple(_LAYOUTS)
_CLASSIFIER = ("classifier.", "fc.", "class_layers.")
# torchvision DenseNet: denselayerN.norm1 (or the hub files' norm.1) -> MONAI denselayerN.layers.norm1
_DENSE_LAYER = re.compile(r"(denselayer\d+)\.(norm|relu|conv)\.?([12])\.")
_SHOW = 3  # keys named per kind of problem


def network_of(encoder: nn.Module) -> nn.Module:
    """The MONAI network inside a backbone's encoder (``Sequential(net, projection, ReLU)`` when
    ``feature_dim`` differs from the network's width, else the network itself)."""
    if isinstance(encoder, nn.Sequential):
        return encoder[0]
    return encoder


def read_state_dict(path: str | Path, where: str = "train.pretrained") -> dict[str, torch.Tensor]:
    """The tensors of a state dict file: ``.safetensors``, or a ``torch.save`` file read without
    the unpickler (a bare state dict, ``{"state_dict": ...}``, or a shortcutlab run checkpoint)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ShortcutlabError(f"{where} {path} does not exist; give a local weights file.")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ShortcutlabError(
                f"{where} {path}: reading .safetensors needs the safetensors package "
                "(pip install safetensors, or the extra [weights]), or save the weights with torch.save."
            ) from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as err:
            raise ShortcutlabError(f"{where} {path} is not a safetensors file ({err}).") from None
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ShortcutlabError(
            f"{where} {path} does not load without unpickling code; give a state dict of tensors "
            "(torch.save(model.state_dict(), path)) or a .safetensors file."
        ) from None
    from shortcutlab.models.checkpoint import CHECKPOINT_FORMAT, Checkpoint

    if isinstance(data, Mapping) and data.get("format") == CHECKPOINT_FORMAT:
        return dict(Checkpoint.load(path).model_state)
    if isinstance(data, Mapping) and not _all_tensors(data):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(data.get(key), Mapping) and _all_tensors(data[key]):
                return dict(data[key])
    if not isinstance(data, Mapping) or not data or not _all_tensors(data):
        raise ShortcutlabError(
            f"{where} {path} is not a state dict (a mapping of parameter names to tensors)."
        )
    return dict(data)


def _all_tensors(data: Mapping) -> bool:
    return bool(data) and all(torch.is_tensor(v) for v in data.values())


def to_monai_keys(backbone: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's keys of ``state`` in MONAI's names: the prefix before the network is
    stripped (keys outside it are left out), the classifier is left out, and torchvision's
    DenseNet layer names gain MONAI's ``layers.``."""
    pattern = _LAYOUTS[backbone][1]
    prefixes = Counter(m.group(1) for k in state if (m := pattern.match(k)))
    prefix = prefixes.most_common(1)[0][0] if prefixes else ""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue  # another part of a bigger model (our projection, a head)
        key = key[len(prefix) :]
        if key.startswith(_CLASSIFIER):
            continue
        if backbone == "densenet121":
            key = _DENSE_LAYER.sub(r"\1.layers.\2\3.", key)
        out[key] = value
    return out


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_pretrained(
    backbone: str,
    encoder: nn.Module,
    path: str | Path,
    in_channels: int,
    where: str = "train.pretrained",
) -> None:
    """Load the weights in ``path`` into the MONAI network of ``encoder`` (in place).

    ``where`` names the setting in error messages. Raises ``ShortcutlabError`` (one sentence) for
    a backbone without a pretrained layout, an unreadable file, or weights that do not fit.
    """
    if backbone not in _LAYOUTS:
        raise ShortcutlabError(
            f"{where} needs a backbone with a pretrained layout ({', '.join(_LAYOUTS)}), "
            f"not '{backbone}'."
        )
    net = network_of(encoder)
    state = to_monai_keys(backbone, read_state_dict(path, where))
    target = net.state_dict()
    first_conv = _LAYOUTS[backbone][0]

    # grayscale model, RGB weights: sum the first convolution over its input channels
    conv = state.get(first_conv)
    if conv is not None and conv.dim() == 4 and first_conv in target:
        if conv.shape[1] == 3 and in_channels == 1:
            state[first_conv] = conv.sum(dim=1, keepdim=True)
        elif conv.shape[1] != in_channels:
            raise ShortcutlabError(
                f"{where} {path} has {conv.shape[1]}-channel weights for {first_conv} and the "
                f"images have {in_channels} channel(s); only RGB weights for grayscale images "
                "are adapted (summed over the channels)."
            )
    # torchvision's downsampling conv has no bias: a zero bias computes the same
    for key in target:
        weight = key[: -len("bias")] + "weight"
        if key.endswith("downsample.0.bias") and key not in state and weight in state:
            state[key] = torch.zeros_like(target[key])

    missing = [k for k in target if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    mismatched = [
        f"{k} file {_shape(v)} vs model {_shape(target[k])}"
        for k, v in state.items()
        if k in target and v.shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} key(s) missing ({_names(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} of another shape ({_names(mismatched)})")
        raise ShortcutlabError(
            f"{where} {path} does not fit {backbone}: {', '.join(problems)}; the keys are "
            f"compared in MONAI's names, after torchvision's are renamed."
        )
    net.load_state_dict({**target, **state})
