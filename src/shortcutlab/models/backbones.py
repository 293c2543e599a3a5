"""Backbones: the 4-conv encoder of MIMM-X experiment 1 and MONAI's DenseNet-121 / ResNet-18.

Every model is ``EncoderHeadModel(encoder, head)``: ``encoder(x)`` returns a flat feature vector
of ``feature_dim`` numbers and ``head`` is one ``nn.Linear``. Methods that split the features into
blocks (MIMM, MIMM-X, dCor) slice that vector; post-hoc methods (SWiFT, DFR) touch only ``head``.
"""

from __future__ import annotations

from collections.abc import Callable

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


def _with_projection(net: nn.Module, width: int, feature_dim: int) -> tuple[nn.Module, int]:
    if feature_dim == width:
        return net, width
    return nn.Sequential(net, nn.Linear(width, feature_dim), nn.ReLU()), feature_dim


BACKBONES: dict[str, Callable[[int, int, int], tuple[nn.Module, int]]] = {
    "small-cnn": _small_cnn,
    "small-cnn-gn": _small_cnn_gn,
    "densenet121": _monai_densenet121,
    "resnet18": _monai_resnet18,
}


def build_model(
    backbone: str,
    in_channels: int,
    num_classes: int,
    image_size: int = 64,
    feature_dim: int = 128,
) -> EncoderHeadModel:
    """Build ``encoder + linear head`` for ``num_classes`` outputs."""
    if backbone not in BACKBONES:
        raise ShortcutlabError(
            f"unknown backbone '{backbone}'; choose one of: {', '.join(sorted(BACKBONES))}"
        )
    encoder, dim = BACKBONES[backbone](in_channels, image_size, feature_dim)
    return EncoderHeadModel(encoder, nn.Linear(dim, num_classes), dim)
