"""Backbones: the 4-conv encoder of MIMM-X experiment 1 and MONAI's DenseNet-121 / ResNet-18/50.

Every model is ``EncoderHeadModel(encoder, head)``: ``encoder(x)`` returns a flat feature vector
of ``feature_dim`` numbers and ``head`` is one ``nn.Linear``. Methods that split the features into
blocks (MIMM, MIMM-X, dCor) slice that vector; post-hoc methods (SWiFT, DFR) touch only ``head``.

The MONAI networks end in global average pooling, so their projection to ``feature_dim`` does not
depend on the image size: 224 px (ImageNet's) works as well as 32 px, DenseNet-121's smallest
(its four 2x downsamplings after the stem would leave nothing of a smaller image).
``build_model(..., pretrained=PATH)`` loads a local weights file into the MONAI network
(``models/pretrained.py``; nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError


class EncoderHeadModel(nn.Module):
    """A classifier ``head(encoder(x))`` that also exposes its features."""

    def __init__(self, encoder: nn.Module, head: nn.Module, feature_dim: int):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class SmallCNN(nn.Module):
    """Four conv blocks (3x3 conv, batch norm, ReLU, 2x2 max pool) and a linear projection.

    The brain-MRI encoder of MIMM-X (Fay et al. 2025, experiment 1) is a 4-conv CNN; the widths
    here (our choice) keep it at about 1,300 images/s for training on 2 CPU cores at 64x64.
    ``norm="group"`` (backbone ``small-cnn-gn``) puts GroupNorm (4 groups) in place of batch
    norm: the output no longer depends on the other images of the batch, so training and
    evaluation compute the same function. Adversarial objectives (MINE, dCor) that move the
    weights every step leave batch norm's running statistics behind; they want this one.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        feature_dim: int = 128,
        width: int = 16,
        norm: str = "batch",
    ):
        super().__init__()
        if norm not in ("batch", "group"):
            raise ShortcutlabError(f"SmallCNN norm must be 'batch' or 'group', not '{norm}'.")
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        blocks: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            blocks += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(4, cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.conv = nn.Sequential(*blocks)
        side = max(image_size // 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.proj = nn.Sequential(
            nn.Flatten(), nn.Linear(chans[-1] * side * side, feature_dim), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.conv(x)))


def _small_cnn(in_channels: int, image_size: int, feature_dim: int) -> tuple[nn.Module, int]:
    return SmallCNN(in_channels, image_size, feature_dim), feature_dim


def _small_cnn_gn(in_channels: int, image_size: int, feature_dim: int) -> tuple[nn.Module, int]:
    return SmallCNN(in_channels, image_size, feature_dim, norm="group"), feature_dim


def _monai_densenet121(
    in_channels: int, image_size: int, feature_dim: int
) -> tuple[nn.Module, int]:
    from monai.networks.nets import DenseNet121

    if image_size < 32:
        raise ShortcutlabError(
            f"densenet121 needs images of at least 32x32 pixels, not {image_size}x{image_size}; "
            "set dataset.image_size to 32 or more."
        )
    net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
    # DenseNet121.class_layers = relu, pool, flatten, out; drop the final linear layer.
    width = net.class_layers.out.in_features
    net.class_layers.out = nn.Identity()
    return _with_projection(net, width, feature_dim)


def _monai_resnet18(in_channels: int, image_size: int, feature_dim: int) -> tuple[nn.Module, int]:
    from monai.networks.nets import resnet18

    # MONAI's default stem has stride 1; conv1_t_stride=2 gives the usual stem (3.6x faster).
    net = resnet18(
        spatial_dims=2, n_input_channels=in_channels, conv1_t_stride=2, feed_forward=False
    )
    return _with_projection(net, 512, feature_dim)


def _monai_resnet50(in_channels: int, image_size: int, feature_dim: int) -> tuple[nn.Module, int]:
    from monai.networks.nets import resnet50

    # the usual stride-2 stem, as resnet18; no bias in the downsampling conv, as torchvision's
    # ResNet-50 (and MedicalNet's), so its weights load one to one
    net = resnet50(
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_stride=2,
        feed_forward=False,
        bias_downsample=False,
    )
    return _with_projection(net, 2048, feature_dim)


def _with_projection(net: nn.Module, width: int, feature_dim: int) -> tuple[nn.Module, int]:
    if feature_dim == width:
        return net, width
    return nn.Sequential(net, nn.Linear(width, feature_dim), nn.ReLU()), feature_dim


BACKBONES: dict[str, Callable[[int, int, int], tuple[nn.Module, int]]] = {
    "small-cnn": _small_cnn,
    "small-cnn-gn": _small_cnn_gn,
    "densenet121": _monai_densenet121,
    "resnet18": _monai_resnet18,
    "resnet50": _monai_resnet50,
}


def build_model(
    backbone: str,
    in_channels: int,
    num_classes: int,
    image_size: int = 64,
    feature_dim: int = 128,
    pretrained: str | Path | None = None,
) -> EncoderHeadModel:
    """Build ``encoder + linear head`` for ``num_classes`` outputs.

    ``pretrained``: a local weights file loaded into the MONAI network of the encoder
    (``models.pretrained.load_pretrained``); the projection and the head stay new.
    """
    if backbone not in BACKBONES:
        raise ShortcutlabError(
            f"unknown backbone '{backbone}'; choose one of: {', '.join(sorted(BACKBONES))}"
        )
    encoder, dim = BACKBONES[backbone](in_channels, image_size, feature_dim)
    if pretrained is not None:
        from shortcutlab.models.pretrained import load_pretrained

        load_pretrained(backbone, encoder, pretrained, in_channels)
    return EncoderHeadModel(encoder, nn.Linear(dim, num_classes), dim)
