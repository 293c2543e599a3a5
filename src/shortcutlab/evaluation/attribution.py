"""Where does the classifier look? Attribution maps of a trained model, from captum, scored
against the phantom's factor masks (docs/methods.md section 8, "Attribution maps").

- ``gradcam``: captum's ``LayerGradCam`` on the encoder's last convolution (Selvaraju et al.
  2017), ReLU'd and upsampled to the image with ``LayerAttribution.interpolate`` (bilinear);
- ``ig``: captum's ``IntegratedGradients`` (Sundararajan et al. 2017) from a black image,
  the absolute value summed over channels.

Both explain the logit of the class predicted on each image. The maps are scored with
``evaluation/localization.py`` against ``data/counterfactual.true_factor_masks`` of ``y`` and of
every attribute: ``attribution_mass[<method>]`` (share of the map on the factor's pixels; compare
with ``factor_mask_share``, what a uniform map puts there), ``attribution_auroc``,
``attribution_cnr`` and ``attribution_miou``; rows with ``target`` = the factor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from shortcutlab.data.counterfactual import has_exact_counterfactuals, true_factor_masks
from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.localization import score_maps

ATTRIBUTION_METHODS = ("gradcam", "ig")
ATTRIBUTION_SPLITS = ("bal", "inv", "test", "val")  # the first the data has is scored
MAX_IMAGES = 128
IG_STEPS = 32

__all__ = [
    "ATTRIBUTION_METHODS",
    "attribution_maps",
    "attribution_rows",
    "check_attribution",
    "last_conv",
]


def check_attribution(methods: Sequence[str], table: ImageTable | None = None) -> None:
    """One sentence for an unknown method, or for data without factor masks."""
    unknown = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if unknown:
        raise ShortcutlabError(
            f"unknown attribution method '{unknown[0]}'; choose from "
            f"{', '.join(ATTRIBUTION_METHODS)} (comma-separated) or none"
        )
    if methods and table is not None and not has_exact_counterfactuals(table):
        raise ShortcutlabError(
            f"--attribution scores maps against the factor masks of the embedded phantoms; "
            f"'{table.name}' has none (use --attribution none)"
        )


def last_conv(model: nn.Module) -> nn.Module:
    """The last ``Conv2d`` of the model's encoder (Grad-CAM's layer)."""
    root = getattr(model, "encoder", model)
    convs = [m for m in root.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ShortcutlabError("Grad-CAM needs a convolutional encoder; this model has no Conv2d")
    return convs[-1]


def attribution_maps(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    method: str,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> np.ndarray:
    """Float (N, H, W) maps of ``method`` for uint8 images (N, C, H, W), explaining the
    predicted class."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    check_attribution([method])
    model = model.eval().to(device)
    x_all = torch.as_tensor(images)
    out = []
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size].to(device).float() / 255.0
        with torch.no_grad():
            target = model(x).argmax(1)
        if method == "gradcam":
            cam = LayerGradCam(model, last_conv(model))
            a = cam.attribute(x, target=target, relu_attributions=True)
            a = LayerAttribution.interpolate(a, tuple(x.shape[-2:]), "bilinear").sum(1)
        else:
            ig = IntegratedGradients(model)
            a = ig.attribute(
                x, torch.zeros_like(x), target=target, n_steps=IG_STEPS, internal_batch_size=256
            )
            a = a.abs().sum(1)
        out.append(a.detach().float().cpu().numpy())
    h, w = x_all.shape[-2:]
    return np.concatenate(out) if out else np.zeros((0, h, w), np.float32)


def attribution_rows(
    model: nn.Module,
    table: ImageTable,
    methods: Sequence[str],
    device: torch.device | str = "cpu",
    seed: int = 0,
    figure: Callable[[str], object] | None = None,
    max_images: int = MAX_IMAGES,
) -> list[dict]:
    """Rows scoring each method's maps against the factor masks of ``y`` and every attribute,
    on up to ``max_images`` seeded images of the first of ``ATTRIBUTION_SPLITS`` the data has;
    ``figure(kind)`` gives the path of a PNG of a few maps (none written without it)."""
    check_attribution(methods, table)
    if not methods:
        return []
    split = next((s for s in ATTRIBUTION_SPLITS if s in table.splits), None)
    part = table.split(split) if split else table
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(part))[:max_images])
    part = part.select(pick)
    factors = ["y", *table.attributes]
    masks = {f: true_factor_masks(part, f) for f in factors}
    rows: list[dict] = []
    maps = {}
    for m in methods:
        maps[m] = attribution_maps(model, part.images, m, device)
        for f in factors:
            scores = score_maps(maps[m], masks[f])
            for key, name in (
                ("mass_in_mask", "attribution_mass"),
                ("pixel_auroc", "attribution_auroc"),
                ("cnr", "attribution_cnr"),
                ("miou", "attribution_miou"),
            ):
                rows.append(_row(split, f, f"{name}[{m}]", scores[key]))
    for f in factors:
        rows.append(_row(split, f, "factor_mask_share", float(masks[f].mean())))
    if figure is not None and len(part):
        _save_maps(part, maps, masks, figure("attribution"))
    return rows


def _row(split, target, metric, value) -> dict:
    return {"split": split or "all", "target": target, "metric": metric, "value": float(value)}


def _save_maps(part: ImageTable, maps: dict, masks: dict, path, n: int = 6) -> None:
    """Columns: images; rows: the image with each factor's mask outlined, then each map."""
    from shortcutlab.plotting import png_bytes
    from shortcutlab.report.figures import plt

    n = min(n, len(part))
    fig, axes = plt.subplots(
        1 + len(maps), n, figsize=(1.3 * n, 1.4 * (1 + len(maps))), squeeze=False
    )
    colors = ["tab:red", "tab:cyan", "tab:orange", "tab:green"]
    for c in range(n):
        img = part.images[c]
        axes[0, c].imshow(
            img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255
        )
        for k, m in enumerate(masks.values()):
            if m[c].any() and not m[c].all():
                axes[0, c].contour(m[c], levels=[0.5], colors=colors[k % 4], linewidths=0.6)
        for r, (name, a) in enumerate(maps.items(), start=1):
            axes[r, c].imshow(a[c], cmap="inferno")
            if c == 0:
                axes[r, c].set_ylabel(name, fontsize=7)
        for r in range(1 + len(maps)):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    legend = ", ".join(f"{f} ({colors[k % 4][4:]})" for k, f in enumerate(masks))
    fig.suptitle(f"attribution maps; outlines: factor masks {legend}", fontsize=7)
    fig.tight_layout()
    path.write_bytes(png_bytes(fig))
    plt.close(fig)
