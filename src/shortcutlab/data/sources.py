"""Data sources: the embedded synthetic datasets, a CSV + image folder, a MedMNIST-style npz.

Each returns an ``ImageTable`` whose metadata has a ``split`` column: taken as is from the
user's data when present, otherwise made by the split builder at the configured correlation.
Every user mistake (missing file, unreadable image, missing column, non-integer label, a group
without images) raises a ``ShortcutlabError`` that names the file, row or column.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shortcutlab.data.cache import cached_images, cached_masks
from shortcutlab.data.splits import (
    build_splits,
    design_split_cells,
    small_group_warnings,
    split_order,
    split_report,
)
from shortcutlab.data.table import ImageTable, SyntheticRender
from shortcutlab.data.target_domain import target_domain_defaults
from shortcutlab.errors import ShortcutlabError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def cache_dir() -> Path:
    """Where generated datasets are cached: ``$SHORTCUTLAB_CACHE`` or ``~/.cache/shortcutlab``."""
    return Path(os.environ.get("SHORTCUTLAB_CACHE", Path.home() / ".cache" / "shortcutlab"))


# --------------------------------------------------------------------------------------------
# embedded synthetic datasets
# --------------------------------------------------------------------------------------------
def make_synthetic(
    name: str,
    size: int,
    attributes: list[str] | None,
    correlation: float,
    seed: int = 0,
    image_size: int = 64,
    strengths: dict[str, float] | None = None,
    fractions: dict[str, float] | None = None,
    use_cache: bool = True,
    target_domain: dict[str, Any] | None = None,
) -> ImageTable:
    """Render an embedded dataset with exactly the cell counts of the split design.

    Attributes not listed in ``attributes`` are still drawn (uniformly, independently) and still
    visible in the images, so they act as nuisance factors, as in real data. ``target_domain``
    (keys as ``TargetDomainConfig``) adds a domain shift: the designed splits all come from the
    source domain, and the splits ``target`` and ``target_unlabelled`` from the target domain.
    """
    from shortcutlab.data.synthetic import SYNTHETIC, render_synthetic, renderer_fingerprint

    if name not in SYNTHETIC:
        raise ShortcutlabError(
            f"unknown dataset '{name}'; choose one of: {', '.join(sorted(SYNTHETIC))}, csv, npz"
        )
    spec = SYNTHETIC[name]
    all_attrs = list(spec.attributes)
    attributes = list(all_attrs if attributes is None else attributes)
    for a in attributes:
        if a not in all_attrs:
            raise ShortcutlabError(
                f"dataset '{name}' has no attribute '{a}'; it has: {', '.join(all_attrs)}"
            )
    for k in strengths or {}:
        if k != "y" and k not in all_attrs:
            raise ShortcutlabError(
                f"dataset.strengths names '{k}', which is neither 'y' nor an attribute of '{name}'"
            )
    if target_domain:
        target_domain = _check_target_domain(target_domain, attributes, all_attrs, name)
    key = json.dumps(
        [name, size, attributes, correlation, seed, image_size, strengths or {}, fractions or {}]
        + [renderer_fingerprint()]
        + ([target_domain] if target_domain else []),
        sort_keys=True,
    )
    path = cache_dir() / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"

    def render_info(n: int) -> SyntheticRender:
        pairs = tuple(sorted((k, float(v)) for k, v in (strengths or {}).items()))
        return SyntheticRender(name, int(seed), int(image_size), pairs, int(n))

    if use_cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = pd.read_json(f["meta"].item(), orient="split")
                return ImageTable(
                    f["images"],
                    meta,
                    attributes,
                    2,
                    f["masks"],
                    name,
                    render=render_info(len(meta)),
                )
        except Exception:  # a corrupt cache entry is regenerated, never trusted
            path.unlink(missing_ok=True)

    cells = design_split_cells(size, 2, {a: 2 for a in attributes}, correlation, fractions)
    meta = cells.loc[cells.index.repeat(cells["count"])].drop(columns="count")
    rng = np.random.default_rng(seed)
    meta = meta.iloc[rng.permutation(len(meta))].reset_index(drop=True)
    for a in all_attrs:
        if a not in attributes:
            meta[a] = rng.integers(0, 2, len(meta))
    if target_domain:
        meta = _with_target_domain(meta, target_domain, all_attrs, rng)
    meta = meta[["y", *all_attrs, "split"]].astype({"y": int, **{a: int for a in all_attrs}})
    images, masks = render_synthetic(
        name, meta, seed=seed, image_size=image_size, strengths=strengths
    )
    meta["render_row"] = np.arange(len(meta))  # where each row lies in the render (counterfactuals)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of this process's own: runs started side by side may render the same data
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images, masks=masks, meta=np.array(meta.to_json(orient="split")))
        tmp.replace(path)
    return ImageTable(images, meta, attributes, 2, masks, name, render=render_info(len(meta)))


# --------------------------------------------------------------------------------------------
# user data: CSV + image folder
# --------------------------------------------------------------------------------------------
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _high_bit(mode: str) -> bool:
    """A PIL mode with more than 8 bits per pixel: 16-bit (``I;16...``), 32-bit int, float."""
    return mode in ("I", "F") or mode.startswith("I;16")


class Conversions:
    """What reading a data set's images changed, counted once per kind for one summary.

    ``add(kind, path, detail)`` counts an image; ``notes(total)`` gives one line per kind,
    naming the first image and its detail (e.g. its original size), for ``ImageTable.notes``.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, kind: str, path: Path | str, detail: str = "", n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        if kind not in self.first:
            self.first[kind] = f"{Path(path).name}{', ' + detail if detail else ''}"

    def notes(self, total: int) -> list[str]:
        return [
            f"images: {n} of {total} {kind} (e.g. {self.first[kind]})"
            for kind, n in self.counts.items()
        ]


def _read_image(
    path: Path, image_size: int, mode: str | None, conversions: Conversions | None = None
) -> np.ndarray:
    """One image as uint8 (C, H, W) at ``image_size`` square, in ``mode`` ("L" or "RGB"; None:
    the image's own, grayscale or colour).

    16-bit, 32-bit and float images are scaled to 8 bits by each image's 0.5-99.5 percentile
    range, as DICOM and NIfTI are (``_to_uint8``); a plain conversion would clip them at 255.
    Each change (bit depth, alpha dropped, grayscale/colour, resize, aspect) is counted in
    ``conversions``.
    """
    from PIL import Image, UnidentifiedImageError

    conv = conversions or Conversions()
    suffix = path.suffix.lower()
    try:
        if suffix == ".dcm":
            arr = _read_dicom(path)
            conv.add(_SCALED.format(what="DICOM"), path)
            img = Image.fromarray(arr)
        elif suffix in (".nii", ".gz"):
            arr = _read_nifti(path)
            conv.add(_SCALED.format(what="NIfTI"), path)
            img = Image.fromarray(arr)
        else:
            img = Image.open(path)
            img.load()
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ShortcutlabError(f"cannot read image {path}: {exc}") from None
    if _high_bit(img.mode):
        raw = np.asarray(img)
        conv.add(
            _SCALED.format(what=f"{_depth_name(img.mode)} ({img.mode})"),
            path,
            f"values {raw.min():.4g} to {raw.max():.4g}",
        )
        img = Image.fromarray(_to_uint8(raw))
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        conv.add("had an alpha channel (transparency), dropped", path, img.mode)
    own = "L" if img.mode in _GRAY_MODES else "RGB"
    if mode is not None and mode != own:
        what = "colour converted to grayscale" if mode == "L" else "grayscale converted to RGB"
        conv.add(f"{what} to match the first image", path)
    img = img.convert(mode or own)
    if img.size != (image_size, image_size):
        w, h = img.size
        conv.add(f"resized to {image_size}x{image_size}", path, f"{w}x{h}")
        if w != h:
            conv.add("not square: stretched to a square (aspect ratio changed)", path, f"{w}x{h}")
        img = img.resize((image_size, image_size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


_SCALED = "{what} scaled to 8 bits by each image's 0.5-99.5 percentile range"


def _depth_name(mode: str) -> str:
    return {"I": "32-bit integer", "F": "float"}.get(mode, "16-bit")


def _read_mask(path: Path, image_size: int) -> np.ndarray:
    """An ROI mask as bool (H, W) at ``image_size``: nonzero is the region, at any bit depth."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ShortcutlabError(f"cannot read mask {path}: {exc}") from None
    if _high_bit(img.mode):  # 0/1 masks in 16 bits must not be clipped or rescaled
        img = Image.fromarray(((np.asarray(img) != 0) * 255).astype(np.uint8))
    img = img.convert("L")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(img) > 0


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float32)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return (np.clip((arr - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError:  # pragma: no cover - optional extra
        raise ShortcutlabError(
            "reading DICOM needs pydicom: pip install 'shortcutlab[medical]'"
        ) from None
    return _to_uint8(pydicom.dcmread(path).pixel_array)


def _read_nifti(path: Path) -> np.ndarray:
    try:
        import nibabel
    except ImportError:  # pragma: no cover - optional extra
        raise ShortcutlabError(
            "reading NIfTI needs nibabel: pip install 'shortcutlab[medical]'"
        ) from None
    vol = np.asarray(nibabel.load(path).dataobj)
    if vol.ndim == 3:  # middle axial slice of a volume
        vol = vol[:, :, vol.shape[2] // 2]
    return _to_uint8(vol)


def _encode_column(df: pd.DataFrame, col: str, source: str) -> tuple[np.ndarray, list]:
    """Integer codes for an attribute column and the category of each code: codes 0..k-1 are
    kept, other integers are coded in numeric order, a pandas categorical in its category order
    (the adapters' age bins), anything else in sorted string order."""
    values = df[col]
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ShortcutlabError(f"{source}: column '{col}' is empty in row {row + 2}")
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(dtype=int), [str(c) for c in values.cat.categories]
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        cats = sorted(values.astype(int).unique().tolist())
        if cats == list(range(len(cats))):
            return values.astype(int).to_numpy(), cats
        code = {c: i for i, c in enumerate(cats)}  # numeric order: 2 before 10
        return values.astype(int).map(code).to_numpy(dtype=int), cats
    cats = sorted(values.astype(str).unique().tolist())
    code = {c: i for i, c in enumerate(cats)}
    return values.astype(str).map(code).to_numpy(dtype=int), cats


def _check_target_domain(
    target: dict[str, Any], attributes: list[str], all_attrs: list[str], name: str
) -> dict[str, Any]:
    """``target`` with its defaults (``target_domain_defaults``) filled in, or a one-line error."""
    target = {**target_domain_defaults(), **target}
    domain = target["attribute"]
    if domain not in all_attrs:
        raise ShortcutlabError(
            f"target_domain.attribute '{domain}' is not an attribute of '{name}'; it has: "
            f"{', '.join(all_attrs)}"
        )
    if domain in attributes:
        raise ShortcutlabError(
            f"the domain attribute '{domain}' is constant within each domain; remove it from "
            "dataset.attributes"
        )
    for a, v in target["fixed"].items():
        if a not in all_attrs or v not in (0, 1):
            raise ShortcutlabError(
                f"target_domain.fixed sets '{a}: {v}'; it takes attributes of '{name}' with a "
                "value 0 or 1"
            )
    for k in ("source", "target"):
        if target[k] not in (0, 1):
            raise ShortcutlabError(f"target_domain.{k} must be 0 or 1, not {target[k]}")
    return target


def _with_target_domain(
    meta: pd.DataFrame, target: dict[str, Any], all_attrs: list[str], rng: np.random.Generator
) -> pd.DataFrame:
    """Designed rows moved to the source domain, then the target rows: balanced classes, the
    ``fixed`` attributes set, the others drawn uniformly."""
    domain = target["attribute"]
    meta = meta.assign(**{domain: int(target["source"])})
    n_eval, n_unl = int(target["size"]), int(target["unlabelled"])
    n = n_eval + n_unl
    rows = pd.DataFrame({"y": rng.permutation(np.arange(n) % 2)})
    for a in all_attrs:
        rows[a] = rng.integers(0, 2, n)
    for a, v in target["fixed"].items():
        rows[a] = int(v)
    rows[domain] = int(target["target"])
    rows["split"] = ["target"] * n_eval + ["target_unlabelled"] * n_unl
    return pd.concat([meta, rows], ignore_index=True)


def read_csv_frame(root: str | Path, metadata: str = "metadata.csv") -> tuple[pd.DataFrame, Path]:
    """``root/metadata`` as a DataFrame and its path; one sentence for a missing or bad file."""
    root = Path(root)
    csv_path = root / metadata
    if not root.is_dir():
        raise ShortcutlabError(f"dataset root {root} is not a folder")
    if not csv_path.is_file():
        raise ShortcutlabError(f"metadata file {csv_path} does not exist")
    try:
        df = pd.read_csv(csv_path)
    except Exception as exc:  # pandas raises many types for malformed files
        raise ShortcutlabError(f"cannot parse {csv_path} as CSV: {exc}") from None
    return df, csv_path


def load_csv_dataset(
    root: str | Path,
    metadata: str = "metadata.csv",
    label: str = "y",
    image_column: str = "path",
    attributes: list[str] | None = None,
    image_size: int = 64,
    mask_column: str = "mask",
    correlation: float = 0.9,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    min_group_size: int = 10,
    induce: dict[str, dict[str, float]] | None = None,
) -> ImageTable:
    """Load ``root/metadata`` (one row per image, paths relative to ``root``) and its images.

    The table's ``notes`` say what loading did: images converted (bit depth, channels, alpha,
    resize, aspect), labels renumbered, the splits (given or built, rows kept and dropped) and,
    as ``"warning: ..."``, groups with fewer than ``min_group_size`` images in a split.
    ``induce``: a shortcut burnt into the images (``data/induce.py``).
    """
    df, csv_path = read_csv_frame(root, metadata)
    return table_from_frame(
        df,
        root,
        label_column=label,
        image_column=image_column,
        attributes=attributes,
        image_size=image_size,
        mask_column=mask_column,
        correlation=correlation,
        seed=seed,
        fractions=fractions,
        min_group_size=min_group_size,
        name=csv_path.parent.name,
        source=str(csv_path),
        induce=induce,
    )


def table_from_frame(
    df: pd.DataFrame,
    root: str | Path,
    *,
    label_column: str = "y",
    image_column: str = "path",
    attributes: list[str] | None = None,
    image_size: int = 64,
    mask_column: str = "mask",
    correlation: float = 0.9,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    min_group_size: int = 10,
    group_column: str | None = None,
    name: str = "data",
    notes: list[str] | None = None,
    source: str | None = None,
    split_mode: str = "auto",
    images: np.ndarray | None = None,
    induce: dict[str, dict[str, float]] | None = None,
) -> ImageTable:
    """One table from a frame of one row per image: label ids, attributes, splits, images.

    ``df`` has ``label_column`` (integer class ids), ``image_column`` (paths relative to
    ``root`` or absolute; with ``images``, an id only), each attribute (integers or category
    names, kept in ``attribute_values``; a pandas categorical keeps its category order) and
    optionally ``split``, ``mask_column`` and ``group_column`` (e.g. ``patient_id``: the split
    builder then keeps each group in one split, ``data/splits.py``). ``split_mode``:
    ``"auto"`` uses a ``split`` column as given and builds the splits without one;
    ``"published"`` uses it and carves ``val`` from ``train`` (whole groups) when it has none;
    ``"build"`` keeps the rows of split ``test`` as they are and builds train/val/inv/bal from
    the others. ``images`` (N, C, H, W) uint8 arrays instead of files, row i for row i of ``df``.
    ``induce`` adds attributes burnt into the images after the splits (``data/induce.py``).
    ``notes`` (the caller's own) come before the split builder's in ``ImageTable.notes``.
    """
    source = source or name
    attributes = list(attributes or [])
    needed = [label_column, *attributes] if images is not None else [image_column]
    for col in dict.fromkeys([*needed, label_column, *attributes]):
        if col not in df.columns:
            raise ShortcutlabError(
                f"{source} has no column '{col}'; its columns are: {', '.join(map(str, df.columns))}"
            )
    if len(df) == 0:
        raise ShortcutlabError(f"{source} has no rows")
    notes = list(notes or [])
    meta, num_classes, values = _encode_frame(df, label_column, attributes, source, notes)
    if images is not None:
        meta["_row"] = np.arange(len(meta))
    if group_column is not None and group_column not in meta.columns:
        group_column = None
    realised, split_notes = _make_splits(
        meta,
        attributes,
        num_classes,
        values,
        source,
        split_mode,
        group_column,
        correlation=correlation,
        seed=seed,
        fractions=fractions,
        min_group_size=min_group_size,
    )
    notes += split_notes
    if induce:
        from shortcutlab.data.induce import induce_attributes

        realised, attributes, values, induce_notes = induce_attributes(
            realised, attributes, values, num_classes, induce, seed
        )
        notes += induce_notes
    # rows grouped by split (stably: each split keeps its order), so that every split of the
    # disk-backed image cache is one contiguous block and ``table.split`` a view of it
    realised = realised.iloc[np.argsort(pd.factorize(realised["split"])[0], kind="stable")]
    realised = realised.reset_index(drop=True)
    conversions = Conversions()
    mask_arr = None
    if images is None:
        paths = _image_paths(realised, Path(root), image_column, source)
        arr = read_images(paths, image_size, conversions)
        mask_arr = _masks_of(realised, Path(root), mask_column, image_size, source)
    else:
        arr = resize_images(images[realised.pop("_row").to_numpy()], image_size, conversions, name)
    if induce:
        from shortcutlab.data.induce import burn_in

        arr = burn_in(arr, realised, induce)
    table = ImageTable(
        arr, realised, attributes, num_classes, mask_arr, name, values, source_column=image_column
    )
    _check_groups(table, source)
    table.notes = conversions.notes(len(arr)) + notes
    return table


def _encode_frame(
    df: pd.DataFrame, label: str, attributes: list[str], source: str, notes: list[str]
) -> tuple[pd.DataFrame, int, dict[str, list]]:
    """``meta``: class ids ``y``, attribute codes, then every other column as is."""
    y_raw = pd.to_numeric(df[label], errors="coerce")
    bad = np.flatnonzero(y_raw.isna().to_numpy() | (y_raw.fillna(0) % 1 != 0).to_numpy())
    if len(bad):
        r = int(bad[0])
        raise ShortcutlabError(
            f"{source} row {r + 2}: label '{label}' must be an integer class id, got '{df[label].iloc[r]}'"
        )
    y, num_classes = _class_ids(y_raw.astype(int).to_numpy(), label, notes)
    meta = pd.DataFrame({"y": y})
    attribute_values = {}
    for a in attributes:
        meta[a], attribute_values[a] = _encode_column(df, a, source)
    for c in [c for c in df.columns if c not in (label, *attributes)]:
        meta[c] = df[c].to_numpy()
    return meta, num_classes, attribute_values


def _make_splits(
    meta: pd.DataFrame,
    attributes: list[str],
    num_classes: int,
    values: dict[str, list],
    source: str,
    mode: str,
    group_column: str | None,
    *,
    correlation: float,
    seed: int,
    fractions: dict[str, float] | None,
    min_group_size: int,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows with their ``split`` (``table_from_frame``'s ``split_mode``) and the notes."""
    has_split = "split" in meta.columns
    if has_split and mode in ("auto", "published"):
        meta = meta.assign(split=meta["split"].astype(str))
        notes: list[str] = []
        if mode == "published" and "val" not in set(meta["split"]):
            meta, carve_note = carve_split(meta, fractions, seed, group_column)
            notes.append(carve_note)
        splits = set(meta["split"])
        if "train" not in splits or "val" not in splits:
            raise ShortcutlabError(
                f"{source}: the 'split' column needs at least 'train' and 'val' rows "
                f"(found: {', '.join(sorted(splits))})"
            )
        where = "the 'split' column" if mode == "auto" else "the data set's published split"
        return meta, notes + _given_split_notes(meta, attributes, values, min_group_size, where)
    kept = meta.iloc[:0]
    if has_split:  # mode "build": the published test rows stay test, the rest is re-split
        is_test = meta["split"].astype(str).to_numpy() == "test"
        kept = meta[is_test].assign(split="test")
        meta = meta[~is_test].drop(columns="split")
    realised, report = build_splits(
        meta,
        attributes,
        num_classes,
        correlation,
        seed,
        fractions,
        values=values,
        min_group_size=min_group_size,
        group_column=group_column,
    )
    notes = report.notes
    if len(kept):
        notes = notes + [
            f"splits: the data set's published test split kept as 'test' ({len(kept)} rows)"
        ]
        realised = pd.concat([realised, kept], ignore_index=True)
    return realised, notes


def carve_split(
    meta: pd.DataFrame, fractions: dict[str, float] | None, seed: int, group_column: str | None
) -> tuple[pd.DataFrame, str]:
    """A ``val`` split carved from ``train`` (whole groups of ``group_column`` when given),
    ``fractions["val"] / (train + val)`` of its rows (0.2 by default), and a note."""
    from shortcutlab.data.splits import DEFAULT_FRACTIONS

    fr = fractions or DEFAULT_FRACTIONS
    share = fr.get("val", 0.15) / max(fr.get("train", 0.6) + fr.get("val", 0.15), 1e-9)
    train = np.flatnonzero(meta["split"].to_numpy() == "train")
    groups = meta[group_column].iloc[train] if group_column else pd.Series(train)
    order = np.random.default_rng(seed + 104729).permutation(pd.unique(groups.astype(str)))
    sizes = groups.astype(str).value_counts()
    chosen, n = set(), 0
    for g in order:
        if n >= share * len(train):
            break
        chosen.add(g)
        n += int(sizes[g])
    to_val = train[groups.astype(str).isin(chosen).to_numpy()]
    split = meta["split"].to_numpy().copy()
    split[to_val] = "val"
    by = f" (whole {group_column}s)" if group_column else ""
    note = (
        f"splits: the published split has no 'val'; {len(to_val)} of {len(train)} train rows "
        f"moved to val{by}"
    )
    return meta.assign(split=split), note


def _image_paths(meta: pd.DataFrame, root: Path, column: str, source: str) -> list[Path]:
    """Each row's image file (relative to ``root`` or absolute); one sentence for a missing one."""
    paths = []
    for rel in meta[column].astype(str):
        path = root / rel
        if not path.is_file():
            raise ShortcutlabError(f"{source}: image '{rel}' (column '{column}') does not exist")
        paths.append(path)
    return paths


def read_images(
    paths: list[Path], image_size: int, conversions: Conversions | None = None
) -> np.ndarray:
    """The images at ``paths`` as one uint8 (N, C, H, W) array at ``image_size`` square.

    The first image fixes the channels (grayscale or RGB); the others are converted to match.
    Every change is counted in ``conversions``. The one place a data set's image files are read:
    decoded once into the disk-backed cache, memory-mapped (``data/cache.py``).
    """
    conversions = conversions if conversions is not None else Conversions()
    # decoded once into the disk-backed cache (data/cache.py) and memory-mapped from there
    return cached_images(paths, image_size, conversions, _read_image)


def read_masks(paths: list[Path], image_size: int) -> np.ndarray:
    """ROI masks at ``paths`` as one bool (N, H, W) array at ``image_size`` square (cached and
    memory-mapped like the images)."""
    return cached_masks(paths, image_size, _read_mask)


def _masks_of(
    meta: pd.DataFrame, root: Path, column: str, image_size: int, source: str
) -> np.ndarray | None:
    """Masks when every row names one in ``column``; None otherwise (no ROI methods then)."""
    if column not in meta.columns:
        return None
    names = meta[column].tolist()
    if not all(isinstance(m, str) and m for m in names):
        for m in names:  # a missing mask file is an error even when others are blank
            if isinstance(m, str) and m and not (root / m).is_file():
                raise ShortcutlabError(f"{source}: mask '{root / m}' does not exist")
        return None
    paths = [root / m for m in names]
    for p in paths:
        if not p.is_file():
            raise ShortcutlabError(f"{source}: mask '{p}' does not exist")
    return read_masks(paths, image_size)


def _class_ids(y: np.ndarray, label: str, notes: list[str]) -> tuple[np.ndarray, int]:
    """Class ids 0..K-1 and K. Labels that are not already 0..K-1 (e.g. 1 and 2, or -1 and 1)
    become the classes 0..K-1 in numeric order, and a note says so: every result names the
    classes by these ids."""
    values = np.unique(y)
    if values.tolist() == list(range(len(values))):
        return y, len(values)
    mapping = ", ".join(f"{v} -> {i}" for i, v in enumerate(values.tolist()))
    notes.append(
        f"labels: '{label}' takes the values {', '.join(map(str, values.tolist()))}, not "
        f"0..{len(values) - 1}; they are the classes {mapping} (in numeric order), and every "
        "result names the classes by these ids (y=0, y=1, ...)"
    )
    return np.searchsorted(values, y), len(values)


def _given_split_notes(
    meta: pd.DataFrame,
    attributes: list[str],
    values: dict[str, list],
    min_group_size: int,
    where: str = "the 'split' column",
) -> list[str]:
    """Notes for splits the user gave: their sizes, and small groups as warnings."""
    sizes = meta["split"].value_counts()
    per_split = ", ".join(f"{s} {int(sizes[s])}" for s in split_order(meta["split"]))
    notes = [f"splits: taken from {where} ({per_split}); dataset.correlation is not used"]
    counts = split_report(meta, attributes, values).counts
    return notes + small_group_warnings(counts, min_group_size)


def _check_groups(table: ImageTable, source: str) -> None:
    """The training split must contain every label; a single-class task cannot be trained."""
    train = table.meta[table.meta["split"] == "train"]
    if train["y"].nunique() < 2:
        raise ShortcutlabError(f"{source}: the train split has only one label value")
    for a in table.attributes:
        if train[a].nunique() < 2:
            raise ShortcutlabError(
                f"{source}: attribute '{a}' has a single value in the train split; an empty "
                "group cannot be evaluated"
            )


# --------------------------------------------------------------------------------------------
# MedMNIST-style npz
# --------------------------------------------------------------------------------------------
def load_npz_dataset(
    path: str | Path,
    attributes: list[str] | None = None,
    image_size: int = 64,
    correlation: float = 0.9,
    seed: int = 0,
    fractions: dict[str, float] | None = None,
    min_group_size: int = 10,
) -> ImageTable:
    """MedMNIST layout: ``{split}_images`` (N, H, W[, C]) and ``{split}_labels`` (N,) or (N, 1);
    attributes as extra arrays ``{split}_{attribute}``. With ``attributes`` and no ``inv``
    split in the file, all rows are pooled and re-split at the configured correlation.

    Images that are not uint8 are scaled to 8 bits by each image's 0.5-99.5 percentile range
    (as DICOM is), unless they are integers within 0..255 already. ``notes`` as for
    ``load_csv_dataset``.
    """
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"npz file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ShortcutlabError(f"cannot read {path} as npz: {exc}") from None
    splits = [k[: -len("_images")] for k in data.files if k.endswith("_images")]
    if not splits:
        raise ShortcutlabError(f"{path} has no '<split>_images' arrays (MedMNIST layout)")
    attributes = list(attributes or [])
    imgs, metas = [], []
    conversions = Conversions()
    for s in splits:
        if f"{s}_labels" not in data.files:
            raise ShortcutlabError(f"{path} has '{s}_images' but no '{s}_labels'")
        x = _npz_to_uint8(data[f"{s}_images"], f"{s}_images", conversions)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        meta = pd.DataFrame(
            {"y": np.asarray(data[f"{s}_labels"]).reshape(len(x), -1)[:, 0].astype(int)}
        )
        for a in attributes:
            if f"{s}_{a}" not in data.files:
                raise ShortcutlabError(f"{path} has no array '{s}_{a}' for attribute '{a}'")
            meta[a] = np.asarray(data[f"{s}_{a}"]).reshape(len(x)).astype(int)
        meta["split"] = s
        imgs.append(x)
        metas.append(meta)
    images = resize_images(np.concatenate(imgs), image_size, conversions, str(path))
    meta = pd.concat(metas, ignore_index=True)
    n_loaded = len(meta)
    notes: list[str] = []
    meta["y"], num_classes = _class_ids(meta["y"].to_numpy(), "labels", notes)
    if attributes and "inv" not in splits:
        meta["_row"] = np.arange(len(meta))
        meta, report = build_splits(
            meta.drop(columns="split"),
            attributes,
            num_classes,
            correlation,
            seed,
            fractions,
            min_group_size=min_group_size,
        )
        notes += report.notes
        images = images[meta.pop("_row").to_numpy()]
    else:
        where = "the file's <split>_images arrays"
        notes += _given_split_notes(meta, attributes, {}, min_group_size, where)
    table = ImageTable(images.astype(np.uint8), meta, attributes, num_classes, None, path.stem)
    _check_groups(table, str(path))
    table.notes = conversions.notes(n_loaded) + notes
    return table


def resize_images(
    images: np.ndarray, image_size: int, conversions: Conversions, name: str
) -> np.ndarray:
    """uint8 (N, C, H, W) arrays resized (bilinear) to ``image_size`` square, counted as one
    conversion of ``name`` (as is when they have that size already)."""
    if images.shape[-2:] == (image_size, image_size):
        return images
    h, w = images.shape[-2:]
    n = len(images)
    conversions.add(f"resized to {image_size}x{image_size}", name, f"{w}x{h}", n)
    if w != h:
        conversions.add(
            "not square: stretched to a square (aspect ratio changed)", name, f"{w}x{h}", n
        )
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(images)).float()
    out = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def _npz_to_uint8(x: np.ndarray, name: str, conversions: Conversions) -> np.ndarray:
    """An npz image array as uint8: as is when it already is, or holds integers in 0..255;
    else each image scaled by its own 0.5-99.5 percentile range (a cast would wrap 16-bit
    values around 256 and turn floats in [0, 1] black)."""
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    if np.issubdtype(x.dtype, np.integer) and x.size and x.min() >= 0 and x.max() <= 255:
        return x.astype(np.uint8)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ShortcutlabError(f"array '{name}' holds {x.dtype}, not image intensities")
    what = _SCALED.format(what=f"{x.dtype} images")
    detail = f"values {x.min():.4g} to {x.max():.4g}" if x.size else ""
    out = np.empty(x.shape, np.uint8)
    for i in range(len(x)):
        out[i] = _to_uint8(x[i])
    conversions.add(what, name, detail, len(x))
    return out


def describe_synthetic() -> list[dict[str, Any]]:
    from shortcutlab.data.synthetic import SYNTHETIC

    return [
        {
            "name": s.name,
            "channels": s.channels,
            "task": s.task,
            "attributes": s.attributes,
            "roi": s.roi,
        }
        for s in SYNTHETIC.values()
    ]
