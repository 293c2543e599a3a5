"""``shortcutlab counterfactual CFG.yaml --flip y|ATTR --out DIR``: a counterfactual data set and
its scores (docs/methods.md section 7, docs/generative.md "Latent Drifting").

1. The Latent Drifting generator is fitted on the config's *training* split (or reused from the
   cache, refused if it was fitted on other data) and ``delta`` is chosen by grid search on the
   same training images (``--delta auto``), or given.
2. The source images are the rows the generator never saw: the ``inv`` split (else ``val``),
   ``--limit`` of them. Each is inverted under its own condition and regenerated with the field
   flipped, at the chosen delta and at delta = 0.
3. The instruments are trained on real images the generator never saw: on the embedded phantoms a
   fresh render with every factor independent (``instrument_table``), on other data the
   uncorrelated ``bal`` split (else ``val``): one ``FactorNet`` (a head per factor) reads the
   factors (effectiveness, preservation) and gives the FID/KID features.
4. ``DIR`` receives ``images/``, ``metadata.csv`` (the toolkit's CSV layout with provenance),
   ``grid.png``, ``delta_curve.png``, ``metrics.json`` and ``instruments.pt`` (the instrument
   network, reusable with ``--instruments`` so that several sets share one FID feature space).
   Everything is written into a sibling temporary folder that is renamed at the end, so ``DIR``
   never holds a half-finished set.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import ExperimentConfig, MethodSpec

METHOD = "counterfactual-aug"
Progress = Callable[[str, int, int], None]


def check_request(cfg: ExperimentConfig, flip: str, to: int | None, delta) -> None:
    """Every user mistake that can be seen before loading data (one sentence each)."""
    from shortcutlab.methods.counterfactual_aug import parse_delta

    parse_delta(delta)
    if flip != "y" and flip not in cfg.dataset.attributes:
        raise ShortcutlabError(
            f"the data has no field '{flip}' to flip; it has: "
            f"{', '.join(['y', *cfg.dataset.attributes])} (add attributes under dataset.attributes)"
        )


def counterfactual_dataset(
    cfg: ExperimentConfig,
    flip: str,
    out: str | Path,
    to: int | None = None,
    delta: str | float = "auto",
    limit: int = 200,
    model_dir: str | Path | None = None,
    edit_mask: bool = False,
    progress: Progress | None = None,
    seed: int | None = None,
    instruments: str | Path | None = None,
) -> dict:
    """Fit or reuse the generator, write the counterfactual set into ``out``; return the
    metrics (also in ``out/metrics.json``). ``instruments``: a saved instrument network
    (``out/instruments.pt`` of an earlier call) to score with instead of training one, so that
    FIDs of several calls share one feature space."""
    from shortcutlab.data.sources import cache_dir
    from shortcutlab.experiment.context import tensors_of
    from shortcutlab.experiment.hparams import method_hparams
    from shortcutlab.experiment.runner import load_dataset, task_info
    from shortcutlab.generative.counterfactuals import flipped_values
    from shortcutlab.methods.counterfactual_aug import drift_params, generator_for, parse_delta

    check_request(cfg, flip, to, delta)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ShortcutlabError(f"{out} is not empty; give a new --out folder")
    hp = method_hparams(MethodSpec(name=METHOD), cfg)
    params = drift_params(hp)
    seed = cfg.seeds[0] if seed is None else int(seed)
    table = load_dataset(cfg.dataset)
    info = task_info(table, cfg, 1)
    cards = {"y": info.num_classes, **dict(zip(info.attributes, info.attribute_cardinalities))}
    new_of = lambda v: flipped_values(v, flip, cards[flip], to)  # noqa: E731
    new_of(np.zeros(1, np.int64))  # a field with more than two values needs --to
    if edit_mask and table.masks is None:
        raise ShortcutlabError("--edit-mask needs ROI masks; the data has none")
    net = None
    if instruments is not None:  # checked before the generator's fit
        from shortcutlab.evaluation.generation_metrics import FactorNet

        net = FactorNet.load(instruments)
        if net.heads_spec != cards or net.in_channels != table.images.shape[1]:
            raise ShortcutlabError(
                f"the instruments in {instruments} read {net.heads_spec}; this data has {cards}"
            )
    train = tensors_of(table.split("train"))
    cache = Path(hp["cache"] or cache_dir() / "generated")
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model, state = generator_for(train, info, params, seed, cache, model_dir, progress)
    given = parse_delta(delta)
    chosen = float(state["delta"]) if given is None else given
    splits = set(table.splits)
    source_split = "inv" if "inv" in splits else "val"
    if net is None:
        instrument_rows, instrument_split = instrument_table(table, seed)
    else:
        instrument_rows, instrument_split = None, f"loaded from {instruments}"
    src_table = table.split(source_split)
    rows = np.sort(np.random.default_rng(seed).permutation(len(src_table))[: max(1, int(limit))])
    src_table = src_table.select(rows)
    table_rows = np.flatnonzero(table.meta["split"].astype(str).to_numpy() == source_split)[rows]
    metrics, images, new_values, extra = score_counterfactuals(
        model,
        src_table,
        instrument_rows if net is None else net,
        table.split("val"),
        info,
        flip,
        new_of,
        chosen,
        params,
        seed,
        edit_mask,
        progress,
    )
    metrics.update(
        {
            "delta": chosen,
            "delta_searched": state["delta"],
            "delta_curve": state["delta_curve"],
            "flip": flip,
            "source_split": source_split,
            "instrument_split": instrument_split,
            "instrument_rows": None if instrument_rows is None else len(instrument_rows),
            "n_counterfactuals": len(images),
            "fit_seconds": state.get("fit_seconds"),
            "search_seconds": state.get("search_seconds"),
            "drift_target": params.drift_target,
            "train_delta": params.train_delta,
        }
    )
    _write(tmp, src_table, table_rows, info, flip, new_values, images, chosen, params, seed)
    _write_extras(tmp, src_table, images, chosen, flip, metrics, extra)
    extra["instruments"].save(tmp / "instruments.pt")
    if out.exists():
        out.rmdir()  # empty (checked above)
    tmp.rename(out)
    return metrics


#: rows of the fresh, uncorrelated phantom render the instruments train on (embedded data)
INSTRUMENT_ROWS = 2000
#: offset of that render's seed from the data's, so none of its images is in the data
INSTRUMENT_SEED_OFFSET = 104729


def instrument_table(table, seed: int):
    """The real images the instruments (effectiveness, preservation, FID features) train on, and
    what they are. Embedded phantoms: a fresh render of ``INSTRUMENT_ROWS`` rows with every factor
    independent of the others (``correlation`` 0.5) and a seed apart from the data's, so neither
    the generator nor the evaluated sources contain them and no factor can stand in for another.
    Other data: the uncorrelated ``bal`` split, else ``val``."""
    from shortcutlab.data.counterfactual import has_exact_counterfactuals
    from shortcutlab.data.sources import make_synthetic

    if has_exact_counterfactuals(table):
        r = table.render
        fresh = make_synthetic(
            r.name,
            size=INSTRUMENT_ROWS,
            attributes=list(table.attributes),
            correlation=0.5,
            seed=r.seed + INSTRUMENT_SEED_OFFSET + int(seed),
            image_size=r.image_size,
            strengths=dict(r.strengths),
            use_cache=False,
        )
        return fresh, f"fresh uncorrelated render ({INSTRUMENT_ROWS} rows)"
    split = "bal" if "bal" in set(table.splits) else "val"
    return table.split(split), split


def score_counterfactuals(
    model,
    sources,
    instruments,
    realism,
    info,
    flip: str,
    new_of,
    delta: float,
    params,
    seed: int,
    edit_mask: bool = False,
    progress: Progress | None = None,
):
    """Counterfactuals of ``sources`` (an ImageTable) and every score of metrics.json.
    ``instruments``: the real images (an ImageTable) the instrument network is trained on, or a
    trained ``FactorNet``."""
    from shortcutlab.data.counterfactual import exact_factors, true_counterfactual
    from shortcutlab.evaluation import generation_metrics as gm
    from shortcutlab.generative.counterfactuals import counterfactuals
    from shortcutlab.generative.latent_drift import sample_batched

    fields = ["y", *info.attributes]

    def cond_of(t):
        tens = t.tensors()
        return {"y": tens["y"], **{a: tens["z"][:, j] for j, a in enumerate(info.attributes)}}

    x = torch.from_numpy(sources.images)
    cond = cond_of(sources)
    old = cond[flip].numpy()
    new = new_of(old)
    keep = None
    if edit_mask:
        if sources.masks is None:
            raise ShortcutlabError("--edit-mask needs ROI masks; the data has none")
        keep = ~torch.from_numpy(sources.masks).to(torch.bool)
    steps, g, bs = params.sample_steps, params.guidance, params.batch_size
    kw = dict(steps=steps, guidance=g, keep=keep, batch_size=bs, progress=progress)
    t0 = time.perf_counter()
    cf = counterfactuals(model, x, cond, flip, new, delta=delta, label="counterfactuals", **kw)
    cf_seconds = time.perf_counter() - t0
    cf0 = counterfactuals(model, x, cond, flip, new, delta=0.0, label="at delta 0", **kw)
    same = counterfactuals(model, x, cond, flip, old, delta=delta, label="composition", **kw)
    back_cond = {**cond, flip: torch.as_tensor(new)}
    back = counterfactuals(model, cf, back_cond, flip, old, delta=delta, label="reverse", **kw)

    if isinstance(instruments, gm.FactorNet):
        net = instruments
    else:
        inst = cond_of(instruments)
        net = gm.train_factor_net(
            torch.from_numpy(instruments.images),
            {f: inst[f].numpy() for f in fields},
            {"y": info.num_classes, **dict(zip(info.attributes, info.attribute_cardinalities))},
            seed=seed,
        )
    real = torch.from_numpy(realism.images)
    rcond = cond_of(realism)
    seeds = [seed * 7919 + i for i in range(len(real))]
    samples = sample_batched(model, rcond, steps, g, seeds, delta, bs)
    samples0 = sample_batched(model, rcond, steps, g, seeds, 0.0, bs)
    realism_scores = gm.fid_kid(real, samples, net)
    realism0 = gm.fid_kid(real, samples0, net)
    m: dict = {
        "fid": realism_scores["fid"],
        "fid_delta0": realism0["fid"],
        "kid": realism_scores["kid"],
        "kid_std": realism_scores["kid_std"],
        "kid_delta0": realism0["kid"],
        "fid_counterfactuals": gm.fid_kid(real, cf, net)["fid"],
        "effectiveness": gm.effectiveness(net, cf, flip, new),
        "effectiveness_delta0": gm.effectiveness(net, cf0, flip, new),
        "effectiveness_by_new_value": {
            str(v): gm.effectiveness(net, cf[new == v], flip, new[new == v]) for v in np.unique(new)
        },
        "preservation": gm.preservation(net, x, cf, flip)["mean"],
        "preservation_per_field": gm.preservation(net, x, cf, flip),
        "preservation_delta0": gm.preservation(net, x, cf0, flip)["mean"],
        "instrument_accuracy_on_sources": {
            f: float(np.mean(p == cond[f].numpy())) for f, p in net.predict(x).items()
        },
        "composition_l1": gm.l1(same, x),
        "reversibility_l1": gm.l1(back, x),
        "autoencoder_l1": gm.l1(model.reconstruct(x), x),
        **gm.ssim_psnr(cf, x),
        "counterfactuals_per_second": len(x) / max(cf_seconds, 1e-9),
        "true_cf_l1": None,
        "source_l1": gm.l1(cf, x),
    }
    extra = {"true": None, "instruments": net}
    if flip in exact_factors(sources):
        true = torch.from_numpy(true_counterfactual(sources, flip, new))
        m["true_cf_l1"] = gm.l1(cf, true)
        m["true_cf_l1_delta0"] = gm.l1(cf0, true)
        m["true_cf_ssim"] = gm.ssim_psnr(cf, true)["ssim"]
        m["true_vs_source_l1"] = gm.l1(true, x)  # the source as a counterfactual
        extra["true"] = true.numpy()
    return m, cf, new, extra


def _write(tmp, sources, table_rows, info, flip, new, images, delta, params, seed) -> None:
    """PNGs and ``metadata.csv``: the toolkit's CSV layout plus provenance columns."""
    from shortcutlab.generative.maskmedpaint import write_generated

    meta = sources.meta.reset_index(drop=True)
    out = meta[["y", *info.attributes]].copy()
    out["split"] = meta["split"].to_numpy()
    old = out[flip].to_numpy().copy()
    out[flip] = new
    out["source_image"] = (
        meta["path"].astype(str)
        if "path" in meta.columns
        else [f"{sources.name} row {r}" for r in table_rows]
    )
    out["source_row"] = table_rows  # row of the data set the config names
    out["flipped_field"] = flip
    out["old_value"] = old
    out["new_value"] = new
    out["delta"] = delta
    out["seed"] = seed
    out["guidance"] = params.guidance
    out["generator"] = "latent-drift"
    write_generated(tmp, images, out)


def _write_extras(tmp, sources, images, delta, flip, metrics, extra) -> None:
    """``delta_curve.png``, ``grid.png`` and ``metrics.json``."""
    from shortcutlab.generative.latent_drift import plot_delta_curve

    plot_delta_curve([tuple(p) for p in metrics["delta_curve"]], delta, tmp / "delta_curve.png")
    counterfactual_grid(sources.images, images.numpy(), extra["true"], tmp / "grid.png", flip)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))


def counterfactual_grid(sources, cfs, true, path: Path, flip: str, n: int = 8) -> Path:
    """Rows: source | counterfactual | |difference| (| true counterfactual, on phantoms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(sources))
    cols = 3 if true is None else 4
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    titles = ["source", f"{flip} flipped", "|difference|", "true counterfactual"]
    for i in range(n):
        src, cf = sources[i].astype(float), cfs[i].astype(float)
        panels = [src, cf, np.abs(cf - src)] + ([true[i].astype(float)] if cols == 4 else [])
        for j, img in enumerate(panels):
            ax = axes[i, j]
            arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0) / 255.0
            ax.imshow(arr, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
