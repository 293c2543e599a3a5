"""Image figures that methods and commands write as they run (below ``report/``, which reuses
them): matplotlib (Agg), returned as PNG bytes."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def generated_grid(
    source: np.ndarray,
    masks: np.ndarray | None,
    generated: list[np.ndarray],
    labels: list[str],
    title: str,
) -> bytes:
    """One row per source image: the source, its ROI mask, then its generated copies.

    ``source`` (N, C, H, W) uint8; ``masks`` (N, H, W) or None; ``generated[i]`` (k_i, C, H, W).
    """
    k = max((len(g) for g in generated), default=0)
    cols = 2 + k
    fig, axes = plt.subplots(
        len(source), cols, figsize=(1.1 * cols, 1.15 * len(source)), squeeze=False
    )

    def show(ax, img):
        ax.imshow(
            img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255
        )

    for r in range(len(source)):
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        show(axes[r, 0], source[r])
        if masks is not None:
            axes[r, 1].imshow(masks[r], cmap="viridis")
        else:
            axes[r, 1].axis("off")
        for c in range(k):
            if c < len(generated[r]):
                show(axes[r, 2 + c], generated[r][c])
            else:
                axes[r, 2 + c].axis("off")
        axes[r, 0].set_ylabel(labels[r], fontsize=7, rotation=0, ha="right", va="center")
    for c, name in enumerate(["source", "ROI mask"] + [f"generated {i + 1}" for i in range(k)]):
        axes[0, c].set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return png_bytes(fig)
