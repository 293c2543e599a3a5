"""Post-hoc commands on a finished checkpoint: ``debias`` (SWiFT) and ``audit``.

Both reuse the runner's evaluation (``evaluate_method``), results table and report, so their
``results.csv`` has the same columns as a run's and ``report.html`` is built the same way.

``debias``: the external set is the data's ``external`` split (contracts.md): rows the checkpoint
never trained on and that no model selection looked at (``val`` is the selection split, so it is
not used). Embedded and npz datasets get one from ``dataset.fractions.external``, CSV datasets
from rows with ``split=external``; without such rows ``debias`` stops with one sentence. Metrics
before and after SWiFT go to ``results.csv`` (methods ``<name>`` and ``<name>+swift``), SWiFT's
compute against the original run's to ``compute.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.audit import fairness_gap_cis
from shortcutlab.experiment.config import ExperimentConfig, MethodSpec
from shortcutlab.experiment.context import Context, tensors_of
from shortcutlab.experiment.hparams import method_hparams
from shortcutlab.experiment.loader import device_settings
from shortcutlab.experiment.runner import (
    carve_holdout,
    evaluate_method,
    load_dataset,
    resolve_device,
    torch_threads,
)
from shortcutlab.methods import TaskInfo
from shortcutlab.methods.erm import ERM
from shortcutlab.methods.swift import (
    SwiftResult,
    attribute_index,
    swift_config_from_hparams,
    swift_debias_splits,
)
from shortcutlab.models.checkpoint import Checkpoint, load_trained_model
from shortcutlab.store.layout import ExperimentLayout, RunLayout
from shortcutlab.store.results import make_results, write_csv_atomic, write_text_atomic


def load_run_checkpoint(path: str | Path, table: ImageTable) -> tuple[Checkpoint, ERM]:
    """The run's checkpoint and its model wrapped as an ``ERM`` method for evaluation."""
    ckpt = Checkpoint.load(path)
    info = TaskInfo(
        num_classes=table.num_classes,
        attributes=list(table.attributes),
        attribute_cardinalities=table.attribute_cardinalities(),
        in_channels=table.in_channels,
        image_size=table.image_size,
        attribute_values={a: list(map(str, v)) for a, v in table.attribute_values.items()},
    )
    for key in ("in_channels", "image_size", "num_classes"):
        if key in ckpt.info and ckpt.info[key] != getattr(info, key):
            raise ShortcutlabError(
                f"the checkpoint was trained with {key}={ckpt.info[key]}, the data has "
                f"{getattr(info, key)}; give the config the checkpoint was trained on."
            )
    model = load_trained_model(path, info, ckpt.backbone)
    method = ERM(model, info, ERM.hparam_defaults())
    return ckpt, method


def posthoc_context(
    table: ImageTable, method: ERM, cfg: ExperimentConfig, layout: RunLayout
) -> Context:
    """A context for evaluating (and SWiFT-tuning) a finished model: val is the only split it
    holds; nothing is trained through it."""
    val = tensors_of(table.split("val"))
    device = resolve_device(cfg.train.device)
    settings = device_settings(device, cfg.train.amp, cfg.train.bf16)
    return Context(
        train=val,
        val=val,
        info=method.info,
        layout=layout,
        device=device,
        seed=layout.seed,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        bf16=settings.autocast_bf16,
    )


def external_rows(table: ImageTable) -> np.ndarray:
    """Rows of the ``external`` split (disjoint from train and val by construction)."""
    rows = np.flatnonzero(table.meta["split"].astype(str).to_numpy() == "external")
    if len(rows) == 0:
        raise ShortcutlabError(
            "debias needs an 'external' split disjoint from train and val: add 'external: "
            "<fraction>' to dataset.fractions, or rows with split=external to the CSV."
        )
    return rows


def take_external_fraction(
    table: ImageTable, rows: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """About ``fraction`` x (training images) rows of the external split, stratified by group
    (each group's share is rounded), seeded."""
    if not 0 < fraction <= 1:
        raise ShortcutlabError(f"--external-fraction must lie in (0, 1], not {fraction}.")
    n_train = int((table.meta["split"].astype(str) == "train").sum())
    want = round(fraction * n_train)
    if want > len(rows):
        raise ShortcutlabError(
            f"--external-fraction {fraction} asks for {want} images ({fraction:.0%} of the "
            f"{n_train} training images) but the external split has {len(rows)}; lower it or "
            "raise dataset.fractions.external."
        )
    if want == len(rows):
        return rows
    _, picked = carve_holdout(table.select(rows), want / len(rows), seed)
    return rows[picked]


def _open_checkpoint(checkpoint: str | Path, cfg: ExperimentConfig, out: Path):
    """What ``debias`` and ``audit`` both start from: the out folder, the data, the model."""
    out.mkdir(parents=True, exist_ok=True)
    table = load_dataset(cfg.dataset)
    ckpt, method = load_run_checkpoint(checkpoint, table)
    return table, ckpt, method, int(ckpt.seed), ckpt.name


def debias_checkpoint(
    checkpoint: str | Path,
    cfg: ExperimentConfig,
    out: str | Path,
    attribute: str | None = None,
    mask: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    external_fraction: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """SWiFT on a checkpoint; writes results.csv, compute.json, swift.json, config.yaml, report.

    ``overrides``: SWiFT hyperparameters on top of the config's (the sweep script uses them).
    ``external_fraction``: use that fraction of the training split's size from the external
    split (stratified, seeded) instead of all of it.
    Runs with ``train.num_threads`` threads and restores the caller's setting afterwards.
    """
    with torch_threads(cfg.train.num_threads):
        return _debias(
            checkpoint, cfg, Path(out), attribute, mask, dict(overrides or {}), external_fraction
        )


def _debias(checkpoint, cfg, out, attribute, mask, overrides, external_fraction):
    from shortcutlab.report.build import build_report

    table, ckpt, method, seed, name = _open_checkpoint(checkpoint, cfg, out)
    hp = method_hparams(MethodSpec(name="swift"), cfg)
    hp.update(overrides)
    if attribute is not None:
        hp["attribute"] = attribute
    if mask is not None:
        hp["mask"] = mask
    j = attribute_index(method.info, hp.get("attribute"))
    swift_cfg = swift_config_from_hparams(hp, seed=seed)

    ext_rows = external_rows(table)
    if external_fraction is not None:
        ext_rows = take_external_fraction(table, ext_rows, external_fraction, seed)
    ctx = posthoc_context(table, method, cfg, RunLayout.single(out, name, seed))
    method.to(ctx.device)
    before = make_results(evaluate_method(method, table, ctx, cfg), name, seed)

    ext = tensors_of(table.select(ext_rows))
    t0 = time.perf_counter()
    # val, the selection split, is only scored (by swift's select="val")
    result: SwiftResult = swift_debias_splits(method.model, ext, ctx.val, j, swift_cfg, ctx.device)
    after = make_results(evaluate_method(method, table, ctx, cfg), f"{name}+swift", seed)
    results = pd.concat([before, after], ignore_index=True)

    compute = _compute_record(ckpt, result, time.perf_counter() - t0)
    compute.update(
        attribute=method.info.attributes[j],
        external_rows=len(ext_rows),
        balanced_rows=len(result.kept_rows),
        mask=swift_cfg.mask,
        fairness=swift_cfg.fairness,
        select=swift_cfg.select,
        selected=result.selected,
    )
    write_csv_atomic(results, out / "results.csv")
    write_text_atomic(json.dumps(compute, indent=1), out / "compute.json")
    write_text_atomic(
        json.dumps({"hparams": hp, "history": result.history}, indent=1), out / "swift.json"
    )
    write_text_atomic(cfg.dump(), out / "config.yaml")
    ckpt.model_state = method.model.state_dict()
    ckpt.swift = compute
    ckpt.save(out / "checkpoint.pt")
    build_report(out)
    return results, compute


def _compute_record(ckpt: Checkpoint, result: SwiftResult, seconds: float) -> dict[str, Any]:
    """SWiFT's samples and seconds next to the original run's (from the checkpoint)."""
    orig = ckpt.compute or {}
    orig_samples = orig.get("samples")
    orig_seconds = orig.get("train_seconds") or orig.get("seconds")
    rec: dict[str, Any] = {
        "swift_samples": result.compute.samples_processed,
        "swift_seconds": result.compute.wall_seconds,
        "original_samples": orig_samples,
        "original_train_seconds": orig_seconds,
    }
    rec["samples_fraction"] = (
        result.compute.samples_processed / orig_samples if orig_samples else None
    )
    rec["seconds_fraction"] = result.compute.wall_seconds / orig_seconds if orig_seconds else None
    return rec


def audit_checkpoint(
    checkpoint: str | Path,
    cfg: ExperimentConfig,
    out: str | Path,
    counterfactual: str | None = "auto",
    attribution: Sequence[str] | None = None,
    cf_limit: int | None = None,
    progress=None,
    generated=None,
) -> pd.DataFrame:
    """Per-group metrics and fairness gaps on every split (the runner's evaluation, with its
    linear probes of every attribute: ``probe_accuracy[f]``, fit on val, ``evaluation/probes.py``)
    and bootstrap CIs of the gaps; writes results.csv, config.yaml and the report.

    ``counterfactual``: auto (exact on the embedded phantoms, none elsewhere) | exact |
    generated | none: the counterfactual reliance rows (``evaluation/reliance.py``; generated:
    the Latent Drifting generator of the checkpoint's seed, fitted on the training split or
    reused from the cache, ``experiment/reliance.generated_counterfactuals``), on at most
    ``cf_limit`` rows per split. ``progress(label, done, total)``: the generator's fit and the
    counterfactuals; ``generated``: a maker from ``generated_counterfactuals`` to reuse (several
    checkpoints of one seed share its counterfactuals). ``attribution``: captum methods
    (``gradcam``, ``ig``) whose maps are scored against the phantom's factor masks
    (``evaluation/attribution.py``); None: both on the embedded phantoms, none elsewhere."""
    from shortcutlab.data.counterfactual import has_exact_counterfactuals
    from shortcutlab.data.splits import split_report
    from shortcutlab.evaluation.attribution import attribution_rows, check_attribution
    from shortcutlab.evaluation.reliance import check_mode
    from shortcutlab.report.build import build_report

    out = Path(out)
    with torch_threads(cfg.train.num_threads):
        table, ckpt, method, seed, name = _open_checkpoint(checkpoint, cfg, out)
        mode = check_mode(counterfactual, table)
        if cf_limit is not None and cf_limit < 1:
            raise ShortcutlabError(f"--cf-limit must be 1 or more, not {cf_limit}")
        if mode == "generated" and generated is None:
            from shortcutlab.experiment.reliance import generated_counterfactuals

            generated = generated_counterfactuals(cfg, table, seed, progress)
        if attribution is None:
            attribution = ("gradcam", "ig") if has_exact_counterfactuals(table) else ()
        check_attribution(attribution, table)
        ctx = posthoc_context(table, method, cfg, RunLayout.single(out, name, seed))
        method.to(ctx.device)
        rows = evaluate_method(method, table, ctx, cfg, counterfactual, generated, cf_limit)
        if attribution:
            rows += attribution_rows(
                method.model, table, attribution, ctx.device, seed, ctx.layout.figure
            )
        info = method.info
        if info.num_classes == 2:
            for split in table.splits:
                part = tensors_of(table.split(split))
                if len(part["y"]) == 0:
                    continue
                y, z = part["y"].numpy(), part["z"].numpy()
                pred = ctx.predict(method, part).argmax(1).numpy()
                for j, attr in enumerate(info.attributes):
                    cis = fairness_gap_cis(y, pred, z[:, j], cfg.bootstrap, seed)
                    for gap, (lo, hi) in cis.items():
                        rows.append(_row(split, attr, f"{gap}_ci_low", lo))
                        rows.append(_row(split, attr, f"{gap}_ci_high", hi))
        results = make_results(rows, name, seed)
        write_csv_atomic(results, out / "results.csv")
        write_text_atomic(cfg.dump(), out / "config.yaml")
        # the report shows each group's size next to its accuracy
        split_report(table.meta, table.attributes).counts.to_csv(ExperimentLayout(out).split_counts)
        build_report(out, kind="audit")
        return results


def _row(split: str, target: str, metric: str, value: float) -> dict[str, Any]:
    return {"split": split, "target": target, "metric": metric, "value": float(value)}
