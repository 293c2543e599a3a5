"""One runner for every method: seeds, sampling, AdamW, autocast, selection on val, resume.

Data flows one way: config -> dataset -> method -> evaluation -> results (-> report).
A run is one (method, seed): ``train_one`` = prepare the data and the method, fit with
selection (``Context.fit``, ``experiment/context.py``), evaluate, save. Its folder
(``store/layout.py``) holds ``checkpoint.pt``, ``log.jsonl``, ``results.csv`` and, written last,
``done.json``. With ``train_one(..., resume=True)`` (every run of ``run_experiment`` and the
sweep's trials, ``experiment/sweep.py``) a run also keeps an epoch checkpoint (``resume.pt``,
deleted once ``done.json`` is written). A re-run skips runs with ``done.json`` and continues an
interrupted one from its last finished epoch (from scratch when it has no epoch checkpoint).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from shortcutlab.data.augment import augment_spec
from shortcutlab.data.grouping import Grouper, empty_train_groups
from shortcutlab.data.sources import load_csv_dataset, load_npz_dataset, make_synthetic
from shortcutlab.data.table import ImageTable, resolved_frame
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.metrics import evaluate_split, selection_score
from shortcutlab.evaluation.probes import probe_rows
from shortcutlab.evaluation.sanity import degenerate_reasons
from shortcutlab.experiment.config import DatasetConfig, ExperimentConfig, MethodSpec
from shortcutlab.experiment.context import Context, tensors_of
from shortcutlab.experiment.hparams import method_hparams, validate_names
from shortcutlab.experiment.loader import device_settings
from shortcutlab.methods import Method, TaskInfo, get_method
from shortcutlab.models import build_model
from shortcutlab.models.checkpoint import Checkpoint
from shortcutlab.store.layout import ExperimentLayout, RunLayout
from shortcutlab.store.results import (
    RESULT_COLUMNS,
    make_results,
    read_results,
    write_csv_atomic,
    write_text_atomic,
)

ProgressFn = Callable[[str, int, int], None]  # (run label, steps done, total steps)


# ---------------------------------------------------------------------------------------------
# data
UNLABELLED_SPLIT = "target_unlabelled"


# ---------------------------------------------------------------------------------------------
def load_dataset(cfg: DatasetConfig) -> ImageTable:
    """The ImageTable a config names, with its split column."""
    from shortcutlab.data.adapters import ADAPTERS

    if cfg.name in ADAPTERS:
        return _load_adapter(cfg)
    if cfg.name == "csv":
        return load_csv_dataset(
            cfg.root,
            metadata=cfg.metadata,
            label=cfg.label,
            image_column=cfg.image_column,
            attributes=cfg.attributes or [],
            image_size=cfg.image_size,
            mask_column=cfg.mask_column,
            correlation=cfg.correlation,
            seed=cfg.seed,
            fractions=cfg.fractions,
            min_group_size=cfg.min_group_size,
            induce=cfg.induce.as_dict() if cfg.induce else None,
        )
    if cfg.name == "npz":
        return load_npz_dataset(
            cfg.path,
            attributes=cfg.attributes or [],
            image_size=cfg.image_size,
            correlation=cfg.correlation,
            seed=cfg.seed,
            fractions=cfg.fractions,
            min_group_size=cfg.min_group_size,
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


def _load_adapter(cfg: DatasetConfig) -> ImageTable:
    """A public data set in its published layout (``data/adapters``)."""
    from shortcutlab.data.adapters import AdapterConfig, load_adapter_dataset

    acfg = AdapterConfig(
        name=cfg.name,
        root=Path(cfg.root or cfg.path or "."),
        label=cfg.label,
        attributes=list(cfg.attributes or []),
        uncertain=cfg.uncertain,
        frontal_only=cfg.frontal_only,
        age_bins={k: list(v) for k, v in cfg.age_bins.items()} if cfg.age_bins else None,
        skin_tone_bins=(
            {k: list(v) for k, v in cfg.skin_tone_bins.items()} if cfg.skin_tone_bins else None
        ),
        artifacts=list(cfg.artifacts),
        files=dict(cfg.files),
    )
    return load_adapter_dataset(
        acfg,
        image_size=cfg.image_size,
        correlation=cfg.correlation,
        seed=cfg.seed,
        fractions=cfg.fractions,
        min_group_size=cfg.min_group_size,
        published_split=cfg.published_split,
        induce=cfg.induce.as_dict() if cfg.induce else None,
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
        attribute_values={a: list(map(str, v)) for a, v in table.attribute_values.items()},
        roi=cfg.dataset.roi,
    )


def build_method(spec_name: str, hp: dict[str, Any], info: TaskInfo, train_cfg) -> Method:
    """The method's model on ``train.backbone``, with ``train.pretrained``'s weights if set (only
    this model: helpers such as a distillation teacher build their own)."""
    cls = get_method(spec_name)
    dim = cls.encoder_dim(info, hp) or train_cfg.feature_dim
    model = build_model(
        train_cfg.backbone,
        info.in_channels,
        info.num_classes,
        info.image_size,
        dim,
        pretrained=getattr(train_cfg, "pretrained", None),
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
    layout: RunLayout | str | Path,
    progress: ProgressFn | None = None,
    *,
    resume: bool = False,
) -> pd.DataFrame:
    """Train, select on val, evaluate every split; write the run folder; return its rows.

    ``layout``: the run's files (``ExperimentLayout.run``), or a folder for a run on its own.
    ``resume``: write an epoch checkpoint (``resume.pt``) after every epoch and, when the folder
    holds one, continue from it (the weights, optimisers, selection and random streams of that
    epoch, so the result is the uninterrupted run's); otherwise an unfinished folder is redone
    from scratch.
    """
    if not isinstance(layout, RunLayout):
        layout = RunLayout.single(layout, spec.name, seed)
    with torch_threads(cfg.train.num_threads):
        return _train_one(table, cfg, spec, seed, layout, progress, resume)


def _train_one(
    table: ImageTable,
    cfg: ExperimentConfig,
    spec: MethodSpec,
    seed: int,
    layout: RunLayout,
    progress: ProgressFn | None,
    resume: bool = False,
) -> pd.DataFrame:
    state = _read_resume(layout) if resume else None
    if state is None:
        if layout.dir.exists():
            shutil.rmtree(layout.dir)  # an interrupted run is redone from scratch
        layout.dir.mkdir(parents=True)
    ctx, method, hp, data_warnings = _prepare(table, cfg, spec, seed, layout)
    if state is not None and state.get("hparams", method.hparams) != dict(method.hparams):
        state = None  # saved with other hyperparameters (a method entry edited since): start over
    t0 = time.perf_counter() - (state["elapsed"] if state else 0.0)
    label = f"{spec.name} seed {seed}"
    selection = _fit_with_selection(
        method, ctx, cfg, progress, label, t0, resume=resume, state=state
    )
    rows = evaluate_method(method, table, ctx, cfg)
    degenerate = _degenerate(method, ctx, selection)
    rows.append(
        {"split": "val", "target": "y", "metric": "degenerate", "value": float(bool(degenerate))}
    )
    results = make_results(rows, spec.name, seed)
    compute = {
        "seconds": time.perf_counter() - t0,
        "train_seconds": selection.train_seconds,
        "samples": ctx.samples_seen,
    }
    warnings = [w.removeprefix("warning: ") for w in data_warnings]
    warnings += degenerate + _selection_notes(selection)
    if selection.resumed_from is not None:
        compute["resumed_from_epoch"] = selection.resumed_from
    _save_run(layout, method, spec, hp, cfg, seed, selection, compute, results, warnings)
    return results


# ---------------------------------------------------------------------------------------------
# epoch checkpoints (``train_one(..., resume=True)``)
RESUME_FILE = "resume.pt"


def _optimizers(method: Method) -> dict[str, torch.optim.Optimizer]:
    """The method's optimisers, by attribute name (``_optimizer``, MINE's ``mine_opt``, ...)."""
    return {k: v for k, v in vars(method).items() if isinstance(v, torch.optim.Optimizer)}


def _read_resume(layout: RunLayout) -> dict[str, Any] | None:
    """The run's epoch checkpoint; None when there is none or it cannot be read."""
    path = layout.file(RESUME_FILE)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a torn or foreign file means: start over
        return None
    return state if isinstance(state, dict) and "epoch" in state else None


def _save_resume(
    layout: RunLayout,
    *,
    epoch: int,
    method: Method,
    selection: Selection,
    ctx: Context,
    generator: torch.Generator,
    train_before: float,
    elapsed: float,
) -> None:
    """Everything the next epoch starts from, written atomically (temporary file, rename)."""
    state = {
        "epoch": epoch,
        "hparams": dict(method.hparams),
        "method": method.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in _optimizers(method).items()},
        "selection": {
            k: getattr(selection, k)
            for k in ("best_score", "best_average", "best_epoch", "best_state", "tie_breaks")
        },
        "last_losses": selection.last_losses,
        "method_extra": method.resume_state(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy_rng": np.random.get_state(),
        "samples_seen": ctx.samples_seen,
        "train_seconds": ctx.train_seconds,
        "train_before": train_before,
        "elapsed": elapsed,
    }
    path = layout.file(RESUME_FILE)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _restore(
    state: dict[str, Any],
    method: Method,
    selection: Selection,
    ctx: Context,
    generator: torch.Generator,
) -> bool:
    """Load an epoch checkpoint into a freshly prepared run; False when it does not fit (the
    run then starts over)."""
    try:
        method.load_state_dict(state["method"])
        for name, opt_state in state["optimizers"].items():
            opt = method.optimizer if name == "_optimizer" else getattr(method, name, None)
            if not isinstance(opt, torch.optim.Optimizer):
                return False
            opt.load_state_dict(opt_state)
    except (RuntimeError, KeyError, ValueError):
        return False
    for k, v in state["selection"].items():
        setattr(selection, k, v)
    selection.last_losses = state["last_losses"]
    method.load_resume_state(state.get("method_extra", {}))
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    np.random.set_state(state["numpy_rng"])
    ctx.samples_seen = state["samples_seen"]
    ctx.train_seconds = state["train_seconds"]
    return True


def _degenerate(method: Method, ctx: Context, selection: Selection) -> list[str]:
    """Why the selected model is degenerate (``evaluation/sanity.py``); [] if it is not."""
    probs = torch.softmax(ctx.predict(method, ctx.val), 1).numpy()
    loss = selection.last_losses.get("loss")
    reasons = degenerate_reasons(probs, ctx.val["y"].numpy(), loss, ctx.info.num_classes)
    return [f"degenerate model: {reason}" for reason in reasons]


def _selection_notes(selection: Selection) -> list[str]:
    if selection.tie_breaks and selection.best_score in (0.0, -np.inf):
        return [
            f"every epoch scored {selection.best_score:g} on {selection.rule}; epoch "
            f"{selection.best_epoch} was kept for its val average accuracy"
        ]
    return []


def check_train_groups(method: type[Method], name: str, train_g, grouper: Grouper) -> list[str]:
    """Warnings (``"warning: ..."``) about groups with no training image; for a method that
    ``needs_every_group`` a ``ShortcutlabError`` naming them instead. Which groups count:
    ``empty_train_groups`` (a value absent from train altogether, e.g. a target domain, is
    excused)."""
    empty = empty_train_groups(np.asarray(train_g), grouper)
    if not empty:
        return []
    groups = ", ".join(["y", *grouper.attributes])
    names = empty[0] if len(empty) == 1 else ", ".join(empty[:-1]) + " and " + empty[-1]
    one = len(empty) == 1
    if method.needs_every_group:
        raise ShortcutlabError(
            f"{name} needs every ({groups}) group in train; {names} {'has' if one else 'have'} "
            f"no training image (give the train split images of {'it' if one else 'them'}: "
            "more data, fewer dataset.attributes or a lower dataset.correlation; or leave "
            f"{name} out)"
        )
    return [
        f"warning: {name} trains without group{'' if one else 's'} {names} (no training "
        "image); accuracy on such a group measures how the model extrapolates to a group it "
        "never saw"
    ]


def _prepare(
    table: ImageTable, cfg: ExperimentConfig, spec: MethodSpec, seed: int, layout: RunLayout
) -> tuple[Context, Method, dict[str, Any], list[str]]:
    """The run's data (train, its holdout, val, unlabelled target images), method, context and
    warnings about the training data (``check_train_groups``, which may refuse the method)."""
    device = resolve_device(cfg.train.device)
    _seed_everything(seed)
    cls = get_method(spec.registry_name)
    hp = method_hparams(spec, cfg)
    train_table = table.split("train")
    holdout = None
    if cls.holdout_fraction > 0:
        keep, hold = carve_holdout(train_table, cls.holdout_fraction, seed)
        holdout = tensors_of(train_table.select(hold))
        train_table = train_table.select(keep)
    train = tensors_of(train_table)
    warnings = check_train_groups(cls, spec.name, train["g"].numpy(), table.grouper)
    steps = max(1, len(train["y"]) // cfg.train.batch_size)
    info = task_info(table, cfg, steps)
    _seed_everything(seed)
    method = build_method(spec.registry_name, hp, info, cfg.train).to(device)
    settings = device_settings(device, cfg.train.amp, cfg.train.bf16)
    if settings.channels_last:
        method = method.to(memory_format=torch.channels_last)
    unlabelled = None
    if UNLABELLED_SPLIT in table.splits:
        unlabelled = tensors_of(table.split(UNLABELLED_SPLIT))
    ctx = Context(
        train=train,
        val=tensors_of(table.split("val")),
        holdout=holdout,
        unlabelled=unlabelled,
        info=info,
        layout=layout,
        device=device,
        seed=seed,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        bf16=settings.autocast_bf16,
        precise_bn=cfg.train.precise_bn,
        num_workers=cfg.train.num_workers,
        augment=augment_spec(cfg.train.augment),
        pin_memory=settings.pin_memory,
        channels_last=settings.channels_last,
    )
    return ctx, method, hp, warnings


@dataclass
class Selection:
    """Model selection on val during ``fit``: the best epoch's weights and the epoch log.

    Ties on the rule's score (every epoch's val worst group at 0, say) are broken by the val
    average accuracy, then by the earlier epoch; ``tie_breaks`` counts the epochs where that
    decided, and the log line of such an epoch says so.
    """

    rule: str
    n_groups: int
    best_score: float = -np.inf
    best_average: float = -np.inf
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None
    train_seconds: float = 0.0
    tie_breaks: int = 0
    last_losses: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None  # the epoch checkpoint's epoch this fit continued from

    def score(self, method: Method, ctx: Context) -> tuple[float, float]:
        """(the rule's score, the val average accuracy) of the current weights; -inf if not
        finite."""
        val = ctx.val
        probs = torch.softmax(ctx.predict(method, val), 1).numpy()
        y, g = val["y"].numpy(), val["g"].numpy()
        score = selection_score(self.rule, probs, y, g, self.n_groups)
        average = selection_score("val_average", probs, y, g, self.n_groups)
        score, average = (v if np.isfinite(v) else -np.inf for v in (score, average))
        return score, average

    def offer(self, epoch: int, score: float, average: float, method: Method) -> bool:
        """Keep these weights if they are the best so far; True when a tie on the rule's score
        was broken by the val average in their favour."""
        tie = score == self.best_score and average > self.best_average
        if score > self.best_score or tie:
            self.best_score, self.best_average, self.best_epoch = score, average, epoch
            self.best_state = copy.deepcopy(method.state_dict())
            self.tie_breaks += int(tie)
        return tie


def _fit_with_selection(
    method: Method,
    ctx: Context,
    cfg: ExperimentConfig,
    progress: ProgressFn | None,
    label: str,
    t0: float,
    *,
    resume: bool = False,
    state: dict[str, Any] | None = None,
) -> Selection:
    """The method's hooks around ``ctx.fit``; after every epoch the val score and a log line
    (and, with ``resume``, an epoch checkpoint).

    ``state``: an epoch checkpoint to continue from (``on_train_start`` runs again, then the
    checkpoint replaces weights, optimisers and random streams). The best epoch's weights are
    restored before ``on_train_end``.
    """
    selection = Selection(cfg.select, ctx.info.num_groups)
    kept = []
    if state is not None:  # the log up to the checkpoint's epoch
        kept = [e for e in ctx.layout.read_log() if e.get("epoch", -1) <= state["epoch"]]
    # the kept lines are on disk (atomically) before anything else: a run killed while it sets
    # up again keeps its finished epochs' log
    write_text_atomic("".join(json.dumps(e) + "\n" for e in kept), ctx.layout.log)
    with ctx.layout.log.open("a") as log:
        method.on_train_start(ctx)
        if progress:
            ctx.progress = lambda stage, d, n: progress(f"{label}: {stage}", d, n)
        try:
            ctx.train = method.training_data(ctx)
        finally:
            ctx.progress = None
        steps = max(1, len(ctx.train["y"]) // cfg.train.batch_size)  # rows may have changed
        total = cfg.train.epochs * (steps + 1)
        done = [0]
        generator = torch.Generator().manual_seed(ctx.seed)  # the batch order of ``fit``
        before = ctx.train_seconds
        start = 0
        if state is not None and _restore(state, method, selection, ctx, generator):
            start = int(state["epoch"]) + 1
            before = state["train_before"]
            done[0] = start * (steps + 1)
            selection.resumed_from = int(state["epoch"])
        elif kept:  # a checkpoint that does not fit this method: start over, log included
            log.seek(0)
            log.truncate()

        def on_step() -> None:
            done[0] += 1
            if progress:
                progress(label, done[0], total)

        def on_epoch(epoch: int, losses: dict[str, float]) -> None:
            method.on_epoch_end(epoch, ctx)
            losses = {**losses, **getattr(method, "epoch_metrics", {})}  # e.g. mi_fresh_critic
            score, average = selection.score(method, ctx)
            tie = selection.offer(epoch, score, average, method)
            selection.last_losses = losses
            entry = {"epoch": epoch, **losses, cfg.select: score}
            if cfg.select != "val_average":
                entry["val_average"] = average
            if tie:
                entry["selected_by"] = f"val_average (tie on {cfg.select})"
            entry["seconds"] = time.perf_counter() - t0
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if resume:
                _save_resume(
                    ctx.layout,
                    epoch=epoch,
                    method=method,
                    selection=selection,
                    ctx=ctx,
                    generator=generator,
                    train_before=before,
                    elapsed=time.perf_counter() - t0,
                )
            done[0] = (epoch + 1) * (steps + 1)
            if progress:
                progress(label, done[0], total)

        ctx.on_step = on_step
        try:
            ctx.fit_from(
                method, cfg.train.epochs, on_epoch=on_epoch, generator=generator, start_epoch=start
            )
        finally:
            ctx.on_step = None
        selection.train_seconds = ctx.train_seconds - before
        if selection.best_state is not None:
            method.load_state_dict(selection.best_state)
        method.on_train_end(ctx)
    return selection


def _save_run(
    layout: RunLayout,
    method: Method,
    spec: MethodSpec,
    hp: dict[str, Any],
    cfg: ExperimentConfig,
    seed: int,
    selection: Selection,
    compute: dict[str, Any],
    results: pd.DataFrame,
    warnings: list[str],
) -> None:
    """Checkpoint, results and, last, ``done.json`` (a run without it is continued or redone
    on resume)."""
    Checkpoint(
        method=spec.registry_name,
        name=spec.name,
        hparams=hp,
        model_state=method.model.state_dict(),
        method_state=method.state_dict(),
        info=asdict(method.info),
        feature_dim=method.model.feature_dim,
        train=cfg.train.model_dump(),
        dataset=cfg.dataset.model_dump(),
        seed=seed,
        selected_epoch=selection.best_epoch,
        selection={"rule": cfg.select, "score": selection.best_score},
        compute=compute,
    ).save(layout.checkpoint)
    write_csv_atomic(results, layout.results)
    layout.file(RESUME_FILE).unlink(missing_ok=True)  # the run no longer needs it
    done = {
        "method": spec.name,
        "seed": seed,
        "selected_epoch": selection.best_epoch,
        "compute": compute,
        "warnings": warnings,
        "meta": run_meta(method),
    }
    write_text_atomic(json.dumps(done, indent=1), layout.done)


def run_meta(method: Method) -> dict[str, str]:
    """When and with what a run was made (the report's run metadata)."""
    import datetime
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("shortcutlab")
    except PackageNotFoundError:  # a source tree on sys.path
        ours = "unknown"
    device = next((p.device for p in method.parameters()), torch.device("cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "version": ours,
        "torch": torch.__version__,
        "device": f"{device.type} ({name or platform.machine()})",
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def evaluate_method(
    method: Method,
    table: ImageTable,
    ctx: Context,
    cfg: ExperimentConfig,
    counterfactual: str | None = "auto",
    generated=None,
    cf_limit: int | None = None,
) -> list[dict]:
    """Metric rows on every split the data has (inv/bal/test are looked at only here), with the
    counterfactual reliance of ``y`` and each attribute on every split but train where the data
    renders exact counterfactuals (``experiment/reliance.py``; ``counterfactual``: auto | exact |
    generated | none; ``generated``: the maker of mode generated; ``cf_limit``: rows per
    split)."""
    from shortcutlab.experiment.reliance import grid_reliance, split_reliance, subset_rows

    rows: list[dict] = []
    reliance = {}
    info = ctx.info
    features: dict[str, dict[str, np.ndarray]] = {}
    labels: dict[str, dict[str, np.ndarray]] = {}
    for split in table.splits:
        if split == UNLABELLED_SPLIT:  # training data of domain-adaptation methods
            continue
        part = tensors_of(table.split(split))
        if len(part["y"]) == 0:
            continue
        logits, features[split] = ctx.predict_features(method, part)
        labels[split] = {"y": part["y"].numpy()}
        labels[split].update({a: part["z"][:, j].numpy() for j, a in enumerate(info.attributes)})
        probs = torch.softmax(logits, 1).numpy()
        rows += evaluate_split(
            split,
            probs,
            part["y"].numpy(),
            part["z"].numpy(),
            info.grouper,
            cfg.bootstrap,
            ctx.seed,
        )
        if split != "train":  # reliance is measured on held-out images only
            split_table = table.split(split)
            found = split_reliance(
                method,
                ctx,
                split,
                split_table,
                part,
                probs,
                cfg.bootstrap,
                counterfactual,
                generated,
                cf_limit,
            )
            rows += [r for f in found for r in f.rows]
            keep = subset_rows(len(split_table), cf_limit, ctx.seed)  # the rows it scored
            if keep is not None:
                split_table, probs = split_table.select(keep), probs[keep]
            reliance[split] = (split_table, found, probs)
    rows += probe_rows(features, labels, info.attributes, fit_split="val", seed=ctx.seed)
    if hasattr(method, "dependence_rows"):  # split methods: mi_fresh_critic (docs/methods.md)
        rows += method.dependence_rows(features, seed=ctx.seed)
    if ctx.seed == cfg.seeds[0]:
        _save_tsne(features, labels, ctx.layout)
        grid_reliance(reliance, ctx.layout)
    return rows


def _save_tsne(
    features: dict[str, dict[str, np.ndarray]],
    labels: dict[str, dict[str, np.ndarray]],
    layout: RunLayout,
) -> None:
    """t-SNE of ``f_y`` on bal (else inv) into the experiment's ``figures/`` for the report."""
    from shortcutlab.report.figures import tsne_plot

    split = next((s for s in ("bal", "inv") if s in features and "f_y" in features[s]), None)
    if split is None or len(features[split]["f_y"]) < 10:
        return
    title = f"{layout.method}: t-SNE of f_y on {split}"
    png = tsne_plot(features[split]["f_y"], labels[split], title, seed=layout.seed)
    layout.figure("tsne_f_y").write_bytes(png)


# ---------------------------------------------------------------------------------------------
# the experiment
# ---------------------------------------------------------------------------------------------
_RESUME_KEYS = ("dataset", "train", "select", "hparams", "bootstrap")
# settings added since with a default that changes results: the value a stored config that
# lacks them was run with (so resuming it under today's default is refused)
_IMPLIED_BEFORE = {("train", "precise_bn"): 0}


def _check_resumable(layout: ExperimentLayout, cfg: ExperimentConfig) -> None:
    out, path = layout.root, layout.config
    if not path.exists():
        return
    old = yaml.safe_load(path.read_text()) or {}
    for (section, key), before in _IMPLIED_BEFORE.items():
        if isinstance(old.get(section), dict):
            old[section].setdefault(key, before)
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
    """One ``run`` at a time per output folder (its ``ExperimentLayout.lock``).

    Two runs into one folder would overwrite each other's checkpoints and results, so a second
    one is refused while ``out/.lock`` names a live process. A lock left by a process that has
    ended (killed, out of memory) on this machine is taken over; one written on another machine
    (a shared cluster disk) is never guessed about: the error says to delete it if it is stale.
    """
    path = ExperimentLayout(out).lock
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
    layout = ExperimentLayout(out)
    _check_resumable(layout, cfg)
    say = on_event or (lambda _msg: None)

    table: ImageTable | None = None
    frames = []
    for spec in cfg.methods:
        for seed in cfg.seeds:
            run = layout.run(spec.name, seed)
            if run.is_finished():
                say(f"{spec.name} seed {seed}: finished before, skipped")
                frames.append(read_results(run.results))
                _say_warnings(run, say)
                continue
            if table is None:
                table = _load_announced(cfg, layout, say)
                # written once the data loaded: a run that failed to start leaves no config
                # behind to refuse the corrected re-run
                write_text_atomic(cfg.dump(), layout.config)
            frames.append(train_one(table, cfg, spec, seed, run, progress, resume=True))
            say(f"{spec.name} seed {seed}: done")
            _say_warnings(run, say)
    results = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    )
    write_csv_atomic(results, layout.results)
    return results


def _say_warnings(run: RunLayout, say: Callable[[str], None]) -> None:
    for warning in (run.read_done() or {}).get("warnings", []):
        say(f"{run.method} seed {run.seed}: WARNING {warning}")


def _load_announced(
    cfg: ExperimentConfig, layout: ExperimentLayout, say: Callable[[str], None]
) -> ImageTable:
    """The data, a line about it, and its split counts and sample grid for the report."""
    from shortcutlab.data.splits import split_report
    from shortcutlab.report.figures import save_sample_grid

    t = time.perf_counter()
    table = load_dataset(cfg.dataset)
    counts = ", ".join(f"{s}={int((table.meta['split'] == s).sum())}" for s in table.splits)
    say(
        f"data: {table.name}, {len(table)} images, splits {counts} ({time.perf_counter() - t:.1f}s)"
    )
    for note in table.notes:  # what the loader converted, dropped or warns about, once per set
        say(f"data: WARNING {note[9:]}" if note.startswith("warning: ") else f"data: {note}")
    split_report(table.meta, table.attributes, table.attribute_values).counts.to_csv(
        layout.split_counts
    )
    write_csv_atomic(resolved_frame(table), layout.dataset_csv)  # the rows this run used
    save_sample_grid(table, layout.samples)
    return table
