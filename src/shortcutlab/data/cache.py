"""A disk-backed cache of decoded images: each data set is decoded and resized once.

``cached_array(kind, paths, params, read)`` stacks ``read(i)`` for every file into
``$SHORTCUTLAB_CACHE/<kind>-<key>.npy`` (written with ``np.lib.format.open_memmap``, so the
decode never holds the data set in RAM) and returns it memory-mapped: rows are paged in from
disk as batches touch them, and a 200,000-image data set neither sits in RAM nor is decoded
again on the next run.

The key is a sha256 over a format version, ``kind``, ``params`` (image size, channel mode...) and
each file's path, size and modification time, in order: changing, adding, removing or reordering
a file, or the image size, makes a new entry. A build writes to a temporary name and renames it
when complete, so an interrupted decode never looks finished; an entry that does not load (a
short or corrupt file) is rebuilt. Next to the array, ``<kind>-<key>.json`` keeps what decoding
noted (``Conversions``), so a cached load reports the same notes as the first one.

The array is opened copy-on-write (``mmap_mode="c"``): it is writable, so ``torch.from_numpy``
takes it without a copy or a warning, and a write (none is expected) changes this process's
pages, never the file. Clear the cache by deleting the files (``rm $SHORTCUTLAB_CACHE/images-*``).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
# a decode of this many files or more reports its progress (when a callback is given)
PROGRESS_EVERY = 1000

Progress = Callable[[int, int], None]  # (files decoded, total)

# Pages of a memory-mapped cache that a process has read stay mapped into it (and count in its
# resident memory) until the kernel needs the memory back. So that a run's resident memory does
# not grow to the size of the data set, the mapped pages are dropped (madvise MADV_DONTNEED:
# they stay in the page cache, a later read maps them again without disk I/O) every time the
# rows read since the last drop reach RELEASE_BYTES: about every batch, because the kernel maps
# whole large folios of the page cache (measured: one random batch of 128 rows of 16 KiB mapped
# 177 MiB on Linux 6.18), and a release costs ~0.1 ms. Cache arrays are read-only by contract
# (opened copy-on-write only so torch can wrap them): a write into one would be undone.
RELEASE_BYTES = 2**20
_MAPPED: weakref.WeakSet = weakref.WeakSet()  # the mmaps of the cache arrays this process opened
_READ = [0]  # bytes of cache rows read since the last release


def cache_dir() -> Path:
    """``$SHORTCUTLAB_CACHE`` or ``~/.cache/shortcutlab`` (as ``data.sources.cache_dir``)."""
    return Path(os.environ.get("SHORTCUTLAB_CACHE", Path.home() / ".cache" / "shortcutlab"))


def cache_key(kind: str, paths: Sequence[Path | str], params: dict[str, Any]) -> str:
    """sha256 (first 24 hex digits) over the format version, ``kind``, ``params`` and each
    file's resolved path, size and modification time (ns)."""
    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, kind, params], sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"\0{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def cache_path(kind: str, key: str) -> Path:
    return cache_dir() / f"{kind}-{key}.npy"


def _open(path: Path, n: int) -> tuple[np.ndarray, dict] | None:
    """The finished entry at ``path`` and its sidecar, or None when it is missing or broken."""
    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
        info = json.loads(side.read_text())
    except Exception:  # a short, truncated or corrupt entry is rebuilt, never trusted
        return None
    if len(arr) != n or list(arr.shape) != info.get("shape"):
        return None
    track(arr)
    return arr, info


def _drop(array: np.memmap) -> None:
    try:  # a shared mapping: the written pages stay in the page cache, to be written back
        array._mmap.madvise(mmap.MADV_DONTNEED)
    except (ValueError, OSError, AttributeError):
        pass


def track(array: np.ndarray) -> None:
    """Count ``array`` (a memory-mapped cache array) among those ``rows_read`` releases."""
    if isinstance(array, np.memmap) and array._mmap is not None:
        _MAPPED.add(array._mmap)


def release_pages() -> None:
    """Drop every tracked cache mapping's resident pages (they stay in the page cache)."""
    _READ[0] = 0
    for m in list(_MAPPED):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (ValueError, OSError, AttributeError):  # closed, or no madvise here
            pass  # (then the kernel reclaims the pages when it needs the memory)


def rows_read(nbytes: int) -> None:
    """Note ``nbytes`` of cache rows read (a batch gathered); past ``RELEASE_BYTES`` since the
    last release, ``release_pages``. Cheap when nothing is tracked (embedded data)."""
    if not _MAPPED:
        return
    _READ[0] += nbytes
    if _READ[0] >= RELEASE_BYTES:
        release_pages()


def cached_array(
    kind: str,
    paths: Sequence[Path | str],
    params: dict[str, Any],
    read: Callable[[int], np.ndarray],
    progress: Progress | None = None,
    describe: Callable[[], dict] | None = None,
) -> tuple[np.ndarray, dict]:
    """``np.stack([read(i) for i in range(len(paths))])``, memory-mapped from the cache, and
    the entry's sidecar dict.

    Every ``read(i)`` must return the same shape and dtype as ``read(0)``. ``describe()`` (after
    the last read; e.g. the decode's conversion notes) is stored beside the array and returned
    with it; on a cache hit nothing is read and the stored dict comes back. ``progress(done,
    total)`` is called every ``PROGRESS_EVERY`` files of a decode.
    """
    n = len(paths)
    path = cache_path(kind, cache_key(kind, paths, params))
    found = _open(path, n)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process's own: runs started side by side may decode the same data
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
    try:
        first = np.asarray(read(0))
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(n, *first.shape))
        out[0] = first
        for i in range(1, n):
            out[i] = read(i)
            if (i + 1) % PROGRESS_EVERY == 0:
                _drop(out)  # written rows stay in the file (page cache), not in this process
                if progress is not None:
                    progress(i + 1, n)
        out.flush()
        del out
        meta = {
            **(describe() if describe else {}),
            "shape": [n, *first.shape],
            "dtype": str(first.dtype),
        }
        side_tmp = tmp.with_suffix(".json")
        side_tmp.write_text(json.dumps(meta))
        side_tmp.replace(path.with_suffix(".json"))
        tmp.replace(path)  # last: only a complete array ever has the finished name
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix(".json").unlink(missing_ok=True)
    if progress is not None and n >= PROGRESS_EVERY:
        progress(n, n)
    found = _open(path, n)
    if found is None:  # pragma: no cover - the file system lost what was just written
        raise OSError(f"the image cache {path} could not be read back")
    return found


def stderr_progress(what: str) -> Progress:
    """A ``progress`` that prints ``what: done/total`` to stderr at every tenth of the way."""
    import sys

    def report(done: int, total: int) -> None:
        step = max(total // 10, PROGRESS_EVERY)
        if done == total or done % step < PROGRESS_EVERY:
            print(f"{what}: {done}/{total}", file=sys.stderr, flush=True)

    return report


def cached_images(
    paths: Sequence[Path],
    image_size: int,
    conversions: Any,
    read_image: Callable[..., np.ndarray],
    progress: Progress | None = None,
) -> np.ndarray:
    """The images at ``paths`` as uint8 (N, C, H, W), memory-mapped from the cache.

    ``read_image(path, image_size, mode, conversions)`` reads one (``data.sources._read_image``);
    the first image's channels (grayscale or colour) decide the mode of the rest. On a cache
    hit ``conversions`` (``data.sources.Conversions``) gets the counts of the first decode.
    """
    mode: list[str | None] = [None]

    def read(i: int) -> np.ndarray:
        arr = read_image(Path(paths[i]), image_size, mode[0], conversions)
        mode[0] = mode[0] or ("L" if arr.shape[0] == 1 else "RGB")
        return arr

    def describe() -> dict:
        return {"counts": conversions.counts, "first": conversions.first}

    if progress is None and len(paths) >= 5 * PROGRESS_EVERY:
        progress = stderr_progress("decoding images into the cache")
    params = {"image_size": image_size, "mode": "first image"}
    images, info = cached_array("images", paths, params, read, progress, describe)
    if not conversions.counts:  # a cache hit: the notes of the decode that made the entry
        conversions.counts.update(info.get("counts", {}))
        conversions.first.update(info.get("first", {}))
    return images


def cached_masks(
    paths: Sequence[Path], image_size: int, read_mask: Callable[[Path, int], np.ndarray]
) -> np.ndarray:
    """ROI masks as bool (N, H, W), memory-mapped from the cache like the images
    (``read_mask(path, image_size)``: ``data.sources._read_mask``)."""
    masks, _ = cached_array(
        "masks", paths, {"image_size": image_size}, lambda i: read_mask(Path(paths[i]), image_size)
    )
    return masks
