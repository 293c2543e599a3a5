"""MedMNIST: one ``<flag>.npz`` (``train_images, train_labels, val_images, val_labels,
test_images, test_labels``; images (N, H, W[, C]), labels (N, 1) or multi-label (N, K)).

``root`` is the npz file, or a folder holding one (``dataset.files.npz`` picks among several).
The images are in the file, so this adapter returns ``(frame, images)``; ``path`` is
``<split>_images[i]``. ``dataset.label``: ``y`` (the class ids as they are) or a class id ``k``
(y = label == k; for multi-label files, y = column k). Attributes: extra arrays
``<split>_<attribute>`` (integer codes), as for the ``npz`` source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shortcutlab.data.adapters.registry import AdapterConfig, register_dataset
from shortcutlab.errors import ShortcutlabError

SPLITS = ("train", "val", "test")


def _npz_path(cfg: AdapterConfig) -> Path:
    if "npz" in cfg.files:
        path = Path(cfg.files["npz"])
        path = path if path.is_absolute() else cfg.root / path
    elif cfg.root.is_dir():
        found = sorted(cfg.root.glob("*.npz"))
        if len(found) != 1:
            raise ShortcutlabError(
                f"medmnist: {cfg.root} holds {len(found)} .npz files; name one in dataset.root "
                "or dataset.files.npz"
            )
        path = found[0]
    else:
        path = cfg.root
    if not path.is_file():
        raise ShortcutlabError(f"medmnist: npz file {path} does not exist")
    return path


def _labels(raw: np.ndarray, label: str, name: str) -> np.ndarray:
    raw = np.asarray(raw).reshape(len(raw), -1)
    if label == "y":
        if raw.shape[1] > 1:
            raise ShortcutlabError(
                f"{name} is multi-label ({raw.shape[1]} columns): dataset.label must pick one, "
                f"0 to {raw.shape[1] - 1}"
            )
        return raw[:, 0].astype(int)
    if not str(label).lstrip("-").isdigit():
        raise ShortcutlabError(f"medmnist: dataset.label must be y or a class id, not '{label}'")
    k = int(label)
    if raw.shape[1] > 1:
        if not 0 <= k < raw.shape[1]:
            raise ShortcutlabError(f"medmnist: label column {k} is not in 0..{raw.shape[1] - 1}")
        return (raw[:, k] > 0).astype(int)
    return (raw[:, 0] == k).astype(int)


@register_dataset("medmnist")
def medmnist(cfg: AdapterConfig) -> tuple[pd.DataFrame, np.ndarray]:
    from shortcutlab.data.sources import Conversions, _npz_to_uint8

    path = _npz_path(cfg)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ShortcutlabError(f"medmnist: cannot read {path} as npz: {exc}") from None
    frames, images, conv = [], [], Conversions()
    for s in SPLITS:
        if f"{s}_images" not in data.files:
            continue
        if f"{s}_labels" not in data.files:
            raise ShortcutlabError(f"{path} has '{s}_images' but no '{s}_labels'")
        x = _npz_to_uint8(data[f"{s}_images"], f"{s}_images", conv)
        images.append(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2))
        frame = pd.DataFrame(
            {
                "path": [f"{s}_images[{i}]" for i in range(len(x))],
                "y": _labels(data[f"{s}_labels"], cfg.label, path.name),
                "split": s,
            }
        )
        for a in cfg.attributes:
            if f"{s}_{a}" not in data.files:
                raise ShortcutlabError(f"{path} has no array '{s}_{a}' for attribute '{a}'")
            frame[a] = np.asarray(data[f"{s}_{a}"]).reshape(len(x)).astype(int)
        frames.append(frame)
    if not frames:
        raise ShortcutlabError(
            f"{path} has none of the arrays train_images, val_images, test_images"
        )
    cfg.notes += conv.notes(sum(len(f) for f in frames))
    return pd.concat(frames, ignore_index=True), np.concatenate(images)
