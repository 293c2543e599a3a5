"""One runner for every method: seeds, sampling, AdamW, autocast, selection on val, resume.

Data flows one way: config -> dataset -> method -> evaluation -> results (-> report).
A run is one (method, seed); its folder holds ``checkpoint.pt``, ``log.jsonl``, ``results.csv``
and, written last, ``done.json``. A re-run skips runs with ``done.json`` and redoes the others.
Model selection sees only the val split; inv/bal/test labels are used for reporting alone.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from shortcutlab.data.sources import load_csv_dataset, load_npz_dataset, make_synthetic
from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.metrics import evaluate_split, selection_score
from shortcutlab.evaluation.probes import probe_rows
from shortcutlab.experiment.config import DatasetConfig, ExperimentConfig, MethodSpec
from shortcutlab.experiment.hparams import method_hparams, validate_names
from shortcutlab.experiment.results import (
    RESULT_COLUMNS,
    make_results,
    read_results,
    write_csv_atomic,
    write_text_atomic,
)
from shortcutlab.methods import Method, TaskInfo, get_method
from shortcutlab.models import build_model

Tensors = dict[str, torch.Tensor]
ProgressFn = Callable[[str, int, int], None]  # (run label, steps done, total steps)


# ---------------------------------------------------------------------------------------------
# data
UNLABELLED_SPLIT = "target_unlabelled"


# ---------------------------------------------------------------------------------------------
def load_dataset(cfg: DatasetConfig) -> ImageTable:
    """The ImageTable a config names, with its split column."""
    if cfg.name == "csv":
        return load_csv_dataset(
            cfg.root,
            cfg.metadata,
            cfg.label,
            cfg.image_column,
            cfg.attributes or [],
            cfg.image_size,
            cfg.mask_column,
            cfg.correlation,
            cfg.seed,
            cfg.fractions,
        )
    if cfg.name == "npz":
        return load_npz_dataset(
            cfg.path, cfg.attributes or [], cfg.image_size, cfg.correlation, cfg.seed, cfg.fractions
        )
    return make_synthetic(
        cfg.name,
        cfg.size,
        cfg.attributes,
        cfg.correlation,
        cfg.seed,
        cfg.image_size,
        cfg.strengths,
        cfg.fractions,
        target_domain=cfg.target_domain.model_dump() if cfg.target_domain else None,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ShortcutlabError(
            f"train.device '{name}' is not a device (use auto, cpu or cuda)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ShortcutlabError("train.device is cuda but no CUDA device is available")
    return device


def carve_holdout(table: ImageTable, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split train rows into (kept, holdout), stratified by joint group; seeded, disjoint."""
    rng = np.random.default_rng(seed + 7919)
    gid = table.group_ids()
    keep, hold = [], []
    for g in np.unique(gid):
        rows = rng.permutation(np.flatnonzero(gid == g))
        n = int(round(fraction * len(rows)))
        hold.append(rows[:n])
        keep.append(rows[n:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(hold))


# ---------------------------------------------------------------------------------------------
# the shared loop
# ---------------------------------------------------------------------------------------------
@dataclass
class Context:
    """The runner's ``RunContext`` (see ``methods/base.py``)."""

    train: Tensors
    val: Tensors
    holdout: Tensors | None
    device: torch.device
    seed: int
    batch_size: int
    eval_batch_size: int
    info: TaskInfo
    run_dir: Path
    bf16: bool = False
    samples_seen: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    # the split `target_unlabelled` (domain shift), for methods that adapt to the target domain
    unlabelled: Tensors | None = None

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def batches(
        self,
        tensors: Tensors,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensors]:
        """One epoch of device batches; ``weights`` (N,) draws N rows with replacement."""
        n = len(tensors["y"])
        bs = batch_size or self.batch_size
        if weights is not None:
            order = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
        elif shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            if shuffle and len(idx) < 2:  # batch norm cannot train on one example
                continue
            yield self.to_device(tensors, idx)

    def to_device(self, tensors: Tensors, idx: torch.Tensor) -> Tensors:
        # ROI masks stay in the CPU tables (context.train["mask"]); batches carry only what
        # update() needs, so the loop costs no more than a bare one.
        batch = {
            k: v[idx].to(self.device, non_blocking=True)
            for k, v in tensors.items()
            if k not in ("x", "mask")
        }
        batch["x"] = tensors["x"][idx].to(self.device, non_blocking=True).float().div_(255.0)
        return batch

    def sampling_weights(self, method: Method, tensors: Tensors) -> torch.Tensor | None:
        if method.sampling == "group_balanced":
            g = tensors["g"]
            counts = torch.bincount(g).double()
            return 1.0 / counts[g]
        return None

    def fit(self, method: Method, epochs: int, tensors: Tensors | None = None) -> None:
        """Train ``method`` for ``epochs`` on ``tensors`` (default: train) with no selection."""
        tensors = self.train if tensors is None else tensors
        gen = torch.Generator().manual_seed(self.seed + 104729)
        weights = self.sampling_weights(method, tensors)
        for _ in range(epochs):
            method.train()
            for batch in self.batches(tensors, weights=weights, generator=gen):
                with self.autocast():
                    method.update(batch)
                self.samples_seen += len(batch["y"])

    @torch.no_grad()
    def predict(self, method: Method, tensors: Tensors) -> torch.Tensor:
        """Logits (N, C) on CPU, in eval mode."""
        was_training = method.training
        method.eval()
        out = []
        for batch in self.batches(tensors, shuffle=False, batch_size=self.eval_batch_size):
            with self.autocast():
                out.append(method.predict(batch["x"]).float().cpu())
        method.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.info.num_classes)

    @torch.no_grad()
    def features(self, method: Method, tensors: Tensors) -> dict[str, np.ndarray]:
        """Named feature blocks of ``method.features`` for every row, as numpy arrays."""
        method.eval()
        parts: dict[str, list[np.ndarray]] = {}
        for batch in self.batches(tensors, shuffle=False, batch_size=self.eval_batch_size):
            with self.autocast():
                for k, v in method.features(batch["x"]).items():
                    parts.setdefault(k, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}


def _tensors(table: ImageTable) -> Tensors:
    t = table.tensors()
    t["idx"] = torch.arange(len(table))
    if table.masks is not None:  # ROI masks, for methods that edit outside the ROI
        t["mask"] = torch.from_numpy(table.masks)
    return t


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def task_info(table: ImageTable, cfg: ExperimentConfig, steps_per_epoch: int) -> TaskInfo:
    return TaskInfo(
        num_classes=table.num_classes,
        attributes=list(table.attributes),
        attribute_cardinalities=table.attribute_cardinalities(),
        in_channels=table.in_channels,
        image_size=table.image_size,
        epochs=cfg.train.epochs,
        steps_per_epoch=steps_per_epoch,
    )


def build_method(spec_name: str, hp: dict[str, Any], info: TaskInfo, train_cfg) -> Method:
    cls = get_method(spec_name)
    dim = cls.encoder_dim(info, hp) or train_cfg.feature_dim
    model = build_model(
        train_cfg.backbone, info.in_channels, info.num_classes, info.image_size, dim
    )
    return cls(model, info, hp)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave as is); the caller's setting is restored."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_one(
    table: ImageTable,
    cfg: ExperimentConfig,
    spec: MethodSpec,
    seed: int,
    run_dir: Path,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Train, select on val, evaluate every split; write the run folder; return its rows."""
    with torch_threads(cfg.train.num_threads):
        return _train_one(table, cfg, spec, seed, run_dir, progress)


def _train_one(
    table: ImageTable,
    cfg: ExperimentConfig,
    spec: MethodSpec,
    seed: int,
    run_dir: Path,
    progress: ProgressFn | None,
) -> pd.DataFrame:
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run is redone from scratch
    run_dir.mkdir(parents=True)
    device = resolve_device(cfg.train.device)
    _seed_everything(seed)
    cls = get_method(spec.registry_name)
    hp = method_hparams(spec, cfg)

    train_table = table.split("train")
    holdout = None
    if cls.holdout_fraction > 0:
        keep, hold = carve_holdout(train_table, cls.holdout_fraction, seed)
        holdout = _tensors(train_table.select(hold))
        train_table = train_table.select(keep)
    train = _tensors(train_table)
    val = _tensors(table.split("val"))
    steps = max(1, len(train["y"]) // cfg.train.batch_size)
    info = task_info(table, cfg, steps)
    _seed_everything(seed)
    method = build_method(spec.registry_name, hp, info, cfg.train).to(device)
    ctx = Context(
        train,
        val,
        holdout,
        device,
        seed,
        cfg.train.batch_size,
        cfg.train.eval_batch_size,
        info,
        run_dir,
        cfg.train.bf16,
    )
    if UNLABELLED_SPLIT in table.splits:
        ctx.unlabelled = _tensors(table.split(UNLABELLED_SPLIT))
    n_groups = info.num_groups
    gen = torch.Generator().manual_seed(seed)
    label = f"{spec.name} seed {seed}"
    done_steps = 0
    log = (run_dir / "log.jsonl").open("w")
    t0 = time.perf_counter()
    method.on_train_start(ctx)
    train = ctx.train = method.training_data(ctx)
    steps = max(1, len(train["y"]) // cfg.train.batch_size)  # the method may add or drop rows
    total = cfg.train.epochs * (steps + 1)
    best_score, best_state, best_epoch = -np.inf, None, -1
    train_seconds = 0.0
    weights = ctx.sampling_weights(method, train)
    for epoch in range(cfg.train.epochs):
        method.train()
        sums: dict[str, float] = {}
        n_batches = 0
        t_epoch = time.perf_counter()
        for batch in ctx.batches(train, weights=weights, generator=gen):
            with ctx.autocast():
                losses = method.update(batch)
            ctx.samples_seen += len(batch["y"])
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n_batches += 1
            done_steps += 1
            if progress:
                progress(label, done_steps, total)
        train_seconds += time.perf_counter() - t_epoch
        method.on_epoch_end(epoch, ctx)
        probs = torch.softmax(ctx.predict(method, val), 1).numpy()
        score = selection_score(cfg.select, probs, val["y"].numpy(), val["g"].numpy(), n_groups)
        if not np.isfinite(score):
            score = -np.inf
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(method.state_dict())
        entry = {
            "epoch": epoch,
            **{k: v / max(n_batches, 1) for k, v in sums.items()},
            cfg.select: score,
            "seconds": time.perf_counter() - t0,
        }
        log.write(json.dumps(entry) + "\n")
        log.flush()
        done_steps = (epoch + 1) * (steps + 1)
        if progress:
            progress(label, done_steps, total)
    if best_state is not None:
        method.load_state_dict(best_state)
    method.on_train_end(ctx)
    log.close()

    rows = evaluate_method(method, table, ctx, cfg)
    results = make_results(rows, spec.name, seed)
    compute = {
        "seconds": time.perf_counter() - t0,
        "train_seconds": train_seconds,
        "samples": ctx.samples_seen,
    }
    torch.save(
        {
            "format": "shortcutlab-checkpoint/1",
            "method": spec.registry_name,
            "name": spec.name,
            "hparams": hp,
            "model_state": method.model.state_dict(),
            "method_state": method.state_dict(),
            "info": info.__dict__,
            "feature_dim": method.model.feature_dim,
            "train": cfg.train.model_dump(),
            "dataset": cfg.dataset.model_dump(),
            "seed": seed,
            "selected_epoch": best_epoch,
            "selection": {"rule": cfg.select, "score": best_score},
            "compute": compute,
        },
        run_dir / "checkpoint.pt",
    )
    write_csv_atomic(results, run_dir / "results.csv")
    write_text_atomic(
        json.dumps(
            {"method": spec.name, "seed": seed, "selected_epoch": best_epoch, "compute": compute},
            indent=1,
        ),
        run_dir / "done.json",
    )
    return results


def evaluate_method(
    method: Method, table: ImageTable, ctx: Context, cfg: ExperimentConfig
) -> list[dict]:
    """Metric rows on every split the data has (inv/bal/test are looked at only here)."""
    rows: list[dict] = []
    info = ctx.info
    features: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, dict[str, np.ndarray]] = {}
    for split in table.splits:
        if split == UNLABELLED_SPLIT:  # training data of domain-adaptation methods
            continue
        part = _tensors(table.split(split))
        if len(part["y"]) == 0:
            continue
        features[split] = ctx.features(method, part)
        labels[split] = {"y": part["y"].numpy()}
        labels[split].update({a: part["z"][:, j].numpy() for j, a in enumerate(info.attributes)})
        probs = torch.softmax(ctx.predict(method, part), 1).numpy()
        rows += evaluate_split(
            split,
            probs,
            part["y"].numpy(),
            part["z"].numpy(),
            info.attributes,
            info.num_classes,
            info.attribute_cardinalities,
            cfg.bootstrap,
            ctx.seed,
        )
    rows += probe_rows(features, labels, info.attributes, fit_split="val", seed=ctx.seed)
    if ctx.seed == cfg.seeds[0]:
        _save_tsne(features, labels, ctx)
    return rows


def _save_tsne(
    features: dict[str, dict[str, np.ndarray]], labels: dict[str, dict[str, np.ndarray]], ctx
) -> None:
    """t-SNE of ``f_y`` on bal (else inv) into the experiment's ``figures/`` for the report."""
    from shortcutlab.report.figures import tsne_plot

    split = next((s for s in ("bal", "inv") if s in features and "f_y" in features[s]), None)
    if split is None or len(features[split]["f_y"]) < 10:
        return
    name, seed = ctx.run_dir.parent.name, ctx.seed
    png = tsne_plot(
        features[split]["f_y"], labels[split], f"{name}: t-SNE of f_y on {split}", seed=seed
    )
    folder = ctx.run_dir.parent.parent / "figures"
    folder.mkdir(exist_ok=True)
    (folder / f"tsne_f_y_{name}_seed{seed}.png").write_bytes(png)


# ---------------------------------------------------------------------------------------------
# the experiment
# ---------------------------------------------------------------------------------------------
_RESUME_KEYS = ("dataset", "train", "select", "hparams", "bootstrap")


def _check_resumable(out: Path, cfg: ExperimentConfig) -> None:
    path = out / "config.yaml"
    if not path.exists():
        return
    old = yaml.safe_load(path.read_text()) or {}
    with contextlib.suppress(Exception):
        # read the stored config through today's schema, so that a setting added since (with a
        # default that changes nothing) does not count as a change
        old = ExperimentConfig.model_validate(old).model_dump(mode="json")
    new = cfg.model_dump(mode="json")
    changed = [k for k in _RESUME_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise ShortcutlabError(
            f"{out} holds a run with a different '{changed[0]}' section; choose another --out "
            "or delete that folder"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """One ``run`` at a time per output folder.

    Two runs into one folder would overwrite each other's checkpoints and results, so a second
    one is refused while ``out/.lock`` names a live process. A lock left by a process that has
    ended (killed, out of memory) on this machine is taken over; one written on another machine
    (a shared cluster disk) is never guessed about: the error says to delete it if it is stale.
    """
    path = out / ".lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
                holder: tuple[str, int] | None = (host, int(pid))
            except (OSError, ValueError):
                holder = None  # being written right now, or not ours: treat as held
            if holder and holder[0] == socket.gethostname() and not _pid_alive(holder[1]):
                path.unlink(missing_ok=True)  # stale: its process has ended
                continue
            who = f"process {holder[1]} on {holder[0]}" if holder else "another process"
            raise ShortcutlabError(
                f"{out} is being written by {who}; wait for it to finish or choose another "
                f"--out (delete {path} if that run is gone)"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text() == me:
                path.unlink()


def run_dir_for(out: Path, method: str, seed: int) -> Path:
    return out / method / f"seed_{seed}"


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    progress: ProgressFn | None = None,
    on_event: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every (method, seed) of ``cfg`` into ``out``; return the combined results table."""
    out = Path(out)
    validate_names(cfg)  # fail on unknown names before any work
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        return _run_locked(cfg, out, progress, on_event)


def _run_locked(
    cfg: ExperimentConfig,
    out: Path,
    progress: ProgressFn | None,
    on_event: Callable[[str], None] | None,
) -> pd.DataFrame:
    _check_resumable(out, cfg)
    write_text_atomic(cfg.dump(), out / "config.yaml")
    say = on_event or (lambda _msg: None)

    table: ImageTable | None = None
    frames = []
    for spec in cfg.methods:
        for seed in cfg.seeds:
            run_dir = run_dir_for(out, spec.name, seed)
            if (run_dir / "done.json").exists() and (run_dir / "results.csv").exists():
                say(f"{spec.name} seed {seed}: finished before, skipped")
                frames.append(read_results(run_dir / "results.csv"))
                continue
            if table is None:
                t = time.perf_counter()
                table = load_dataset(cfg.dataset)
                say(
                    f"data: {table.name}, {len(table)} images, splits "
                    + ", ".join(
                        f"{s}={int((table.meta['split'] == s).sum())}" for s in table.splits
                    )
                    + f" ({time.perf_counter() - t:.1f}s)"
                )
                _save_dataset_artifacts(table, out)
            frames.append(train_one(table, cfg, spec, seed, run_dir, progress))
            say(f"{spec.name} seed {seed}: done")
    results = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    write_csv_atomic(results, out / "results.csv")
    return results


def _save_dataset_artifacts(table: ImageTable, out: Path) -> None:
    """Split counts and a sample grid for the report (written once, cheap)."""
    from shortcutlab.data.splits import split_report

    counts = split_report(table.meta, table.attributes).counts
    counts.to_csv(out / "split_counts.csv")
    from shortcutlab.report.figures import save_sample_grid

    save_sample_grid(table, out / "samples.png")
