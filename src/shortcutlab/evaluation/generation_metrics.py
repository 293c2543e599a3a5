"""Scores of generated and counterfactual images, for any generator (docs/methods.md section 7).

- Realism: FID and KID with torchmetrics (``FrechetInceptionDistance``,
  ``KernelInceptionDistance``). Inception weights cannot be downloaded here, and Inception
  features of 64-pixel grayscale phantoms mean little anyway; as is the practice for medical
  images, the features are those of a network trained on the run's own real images
  (``FactorNet``, penultimate layer), or of a saved one (``FactorNet.load``). FIDs are therefore
  comparable within a run and data set, not with published Inception FIDs. KID's subset size is
  lowered to the smaller set's size.
- Faithfulness (Monteiro et al. 2023, axiomatic soundness): ``effectiveness`` (an independent
  classifier reads the new value of the flipped field), ``preservation`` (it reads every other
  field as on the source), composition and reversibility as L1 distances, SSIM/PSNR to the source
  (torchmetrics).
- Ground truth: the L1 to the phantom's true counterfactual (``data/counterfactual.py``).

Images are uint8 (N, C, H, W); L1 is the mean absolute difference on [0, 1] pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shortcutlab.errors import ShortcutlabError


def _unit(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


class FactorNet(nn.Module):
    """A small CNN with one head per factor (``y`` and attributes): the independent classifier of
    effectiveness/preservation, and (penultimate layer, ``num_features``) the FID/KID features."""

    def __init__(self, in_channels: int, heads: dict[str, int], width: int = 32):
        super().__init__()
        self.heads_spec = dict(heads)
        self.in_channels, self.width = int(in_channels), int(width)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.GroupNorm(8, w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.GroupNorm(8, 2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.GroupNorm(8, 4 * w),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 4 * w
        self.heads = nn.ModuleDict({k: nn.Linear(4 * w, c) for k, c in heads.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, num_features) of images (uint8 or [0, 1] floats): torchmetrics' hook."""
        return self.body(_unit(x).to(next(self.parameters()).device))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """The predicted value of each factor."""
        self.eval()
        out: dict[str, list] = {k: [] for k in self.heads}
        for chunk in torch.as_tensor(images).split(batch_size):
            f = self(chunk)
            for k, head in self.heads.items():
                out[k].append(head(f).argmax(1).cpu().numpy())
        return {k: np.concatenate(v) if v else np.zeros(0, int) for k, v in out.items()}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = {"in_channels": self.in_channels, "heads": self.heads_spec, "width": self.width}
        torch.save({"spec": spec, "state": self.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FactorNet:
        """A network saved by ``save`` (a local weights file; nothing is downloaded)."""
        path = Path(path)
        if not path.is_file():
            raise ShortcutlabError(f"feature network weights {path} do not exist")
        data = torch.load(path, map_location="cpu", weights_only=True)
        net = cls(**data["spec"])
        net.load_state_dict(data["state"])
        return net.eval()


def train_factor_net(
    images: torch.Tensor,
    labels: dict[str, np.ndarray],
    cardinalities: dict[str, int],
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> FactorNet:
    """Fit a ``FactorNet`` on real images (the sum of one cross-entropy per factor; flips as
    augmentation are not used, they would change the phantoms' sided markers)."""
    torch.manual_seed(seed)
    images = torch.as_tensor(images)
    net = FactorNet(images.shape[1], cardinalities)
    ys = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in labels.items()}
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=gen).split(batch_size):
            f = net(images[idx])
            loss = sum(F.cross_entropy(net.heads[k](f), ys[k][idx]) for k in net.heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def fid_kid(
    real: torch.Tensor, fake: torch.Tensor, features: nn.Module, subset_size: int | None = None
) -> dict[str, float]:
    """FID and KID (mean, std) of ``fake`` against ``real`` in the feature space of ``features``
    (torchmetrics; float64 statistics; KID subsets of at most the smaller set's size)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    warnings.filterwarnings("ignore", message=".*will save all extracted features.*")

    real, fake = _unit(real), _unit(fake)
    if len(real) < 2 or len(fake) < 2:
        raise ShortcutlabError("FID/KID need at least two real and two generated images")
    features = features.eval()
    subset = min(subset_size or 1000, len(real), len(fake))
    fid = FrechetInceptionDistance(feature=features, normalize=True)
    kid = KernelInceptionDistance(feature=features, normalize=True, subset_size=subset)
    for metric in (fid, kid):
        for chunk in real.split(256):
            metric.update(chunk, real=True)
        for chunk in fake.split(256):
            metric.update(chunk, real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def l1(a, b) -> float:
    """Mean absolute difference on [0, 1] pixels."""
    return float((_unit(a) - _unit(b)).abs().mean())


def ssim_psnr(a, b) -> dict[str, float]:
    """SSIM and PSNR (data range 1) of ``a`` to ``b`` with torchmetrics."""
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    x, y = _unit(a), _unit(b)
    return {
        "ssim": float(structural_similarity_index_measure(x, y, data_range=1.0)),
        "psnr": float(peak_signal_noise_ratio(x, y, data_range=1.0)),
    }


def effectiveness(net: FactorNet, counterfactuals, field: str, new_values) -> float:
    """Fraction of counterfactuals in which the classifier reads the new value of ``field``."""
    pred = net.predict(counterfactuals)[field]
    return float(np.mean(pred == np.asarray(new_values))) if len(pred) else float("nan")


def preservation(net: FactorNet, sources, counterfactuals, field: str) -> dict[str, float]:
    """Per other factor: fraction of counterfactuals the classifier reads as it reads the
    source; ``"mean"`` is their average."""
    a, b = net.predict(sources), net.predict(counterfactuals)
    out = {k: float(np.mean(a[k] == b[k])) for k in a if k != field and len(a[k])}
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
