"""Command line: ``shortcutlab run | report | datasets | methods | debias | audit | sweep |
compare | counterfactual | ground`` (contracts.md).

User mistakes print one sentence on stderr and exit with status 2; no tracebacks.
"""

from __future__ import annotations

import shlex
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from shortcutlab.errors import ShortcutlabError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find, fix and verify shortcut learning in medical-imaging classifiers.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()


@contextmanager
def _progress(quiet: bool):
    """A rich progress display; yields ``update(label, done, total)``, one bar per label."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=quiet) as progress:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield update


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _config_args(ctx: typer.Context, args: list[str] | None, preset: str | None):
    """``[CONFIG.yaml] key=value ...`` of ``run`` and ``sweep``: the config path and the
    overrides; one sentence for a second path or for neither a config nor a preset."""
    config_path, overrides = None, []
    for item in list(args or []) + list(ctx.args):
        if "=" in item:
            overrides.append(item)
        elif config_path is None:
            config_path = item
        else:
            _fail(f"unexpected argument '{item}': give one config file, then key=value overrides")
    if config_path is None and preset is None:
        _fail("give a config file or --preset quick|full")
    return config_path, overrides


def _full_configs(config_path, overrides):
    """The full preset: (dataset name, its config) for every embedded dataset."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.presets import FULL_DATASETS

    for name, dataset_overrides in FULL_DATASETS.items():
        yield name, load_config(config_path, "full", [*dataset_overrides, *overrides])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    args: list[str] = typer.Argument(
        None, help="[CONFIG.yaml] then key.sub=value overrides", show_default=False
    ),
    out: Path = typer.Option(None, "--out", "-o", help="run folder (default runs/<dataset>)"),
    preset: str = typer.Option(None, "--preset", help="quick | full"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    only: list[str] = typer.Option(
        None,
        "--only",
        help="only these method entries, by name (repeat or a,b)",
        show_default=False,
    ),
) -> None:
    """Train and evaluate every method and seed of a config; write results, summary and report."""
    from shortcutlab.experiment.config import load_config

    config_path, overrides = _config_args(ctx, args, preset)
    if preset == "full":
        if only:
            _fail("--only selects entries of one config; it does not apply to --preset full")
        return _run_full(config_path, overrides, out or Path("runs/full"), quiet)
    cfg = load_config(config_path, preset, overrides)
    if only:
        cfg = _only_entries(cfg, only)
    out = out or Path("runs") / cfg.dataset.name
    _run_one(cfg, out, quiet)


def _only_entries(cfg, only: list[str]):
    """The config with the method entries named by ``--only`` (in the config's order), e.g. to
    run one config's entries as separate jobs into separate folders."""
    wanted = {name.strip() for item in only for name in item.split(",") if name.strip()}
    names = [m.name for m in cfg.methods]
    unknown = sorted(wanted - set(names))
    if unknown:
        _fail(
            f"--only: no method entry named '{unknown[0]}' in the config; its entries: "
            + ", ".join(names)
        )
    return cfg.model_copy(update={"methods": [m for m in cfg.methods if m.name in wanted]})


def _interrupted(kept: str) -> typer.Exit:
    """Say what Ctrl-C kept and the command that resumes; the exit to raise."""
    command = shlex.join(["shortcutlab", *sys.argv[1:]])
    console.print(
        f"interrupted: {kept}; resume with the same command:\n  {command}",
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(130)


def _run_one(cfg, out: Path, quiet: bool) -> None:
    from shortcutlab.experiment.runner import run_experiment
    from shortcutlab.report.build import build_report

    def say(msg: str) -> None:
        if "WARNING" in msg:  # shown with --quiet too
            console.print(f"[bold yellow]{msg}[/]", highlight=False, soft_wrap=True)
        elif not quiet:
            console.print(f"[dim]{msg}[/]", highlight=False)

    try:
        with _progress(quiet) as update:
            run_experiment(cfg, out, progress=update, on_event=say)
    except KeyboardInterrupt:
        raise _interrupted(
            f"the finished (method, seed) runs in {out} are kept and the one in progress "
            "continues from its last finished epoch"
        ) from None
    report = build_report(out)
    if not quiet:
        _print_headline(out)
    console.print(f"results: {out / 'results.csv'}\nreport:  {report}")


def _print_headline(out: Path) -> None:
    import yaml

    from shortcutlab.report.build import headline_table
    from shortcutlab.report.figures import method_order
    from shortcutlab.store.results import read_results

    config = None
    with suppress(OSError, yaml.YAMLError):
        config = yaml.safe_load((out / "config.yaml").read_text())
    results = read_results(out / "results.csv")
    order = method_order(config if isinstance(config, dict) else None, results["method"])
    headline = headline_table(results, order)
    table = Table(title=f"{out}: accuracy % (val = with the shortcut, inv = against it)")
    # method names are never cut: the number columns wrap instead
    width = max((len(str(m)) for m in headline.index), default=6)
    table.add_column("method", no_wrap=True, min_width=min(width, 40), overflow="fold")
    # short headers so the table fits 80 columns without breaking words; the caption says what
    # the drop is
    short = {"val→inv drop": "drop"}
    for col in headline.columns:
        table.add_column(short.get(str(col), str(col)), justify="right", overflow="fold")
    if "val→inv drop" in headline.columns:
        table.caption = "drop: val acc - inv acc, in points (near 0 = no shortcut reliance seen)"
    for method, row in headline.iterrows():
        table.add_row(str(method), *[str(v) for v in row])
    out_console.print(table)


def _run_full(config_path, overrides, out: Path, quiet: bool) -> None:
    """The full preset: every embedded dataset with three seeds, one sub-folder each."""
    for name, cfg in _full_configs(config_path, overrides):
        console.print(f"[bold]{name}[/]")
        _run_one(cfg, out / name, quiet)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def generate(
    ctx: typer.Context,
    generator: str = typer.Argument(..., help="maskmedpaint | text2img | img2img"),
    args: list[str] = typer.Argument(
        None, help="CONFIG.yaml then key.sub=value overrides", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="folder for metadata.csv, PNGs and model/"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Fit the diffusion model on the training split and write a generated set (CSV + PNGs)."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.generate import generate_dataset

    items = list(args or []) + list(ctx.args)
    paths = [i for i in items if "=" not in i]
    if len(paths) != 1:
        _fail("give one config file, then key=value overrides")
    cfg = load_config(paths[0], None, [i for i in items if "=" in i])
    with _progress(quiet) as update:
        table = generate_dataset(cfg, generator, out, update)
    console.print(f"{len(table)} generated images: {out / 'metadata.csv'}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a finished run folder")) -> None:
    """Rebuild report.html and summary.md of a finished run folder."""
    from shortcutlab.report.build import build_report

    if not run_dir.is_dir():
        _fail(f"run folder {run_dir} does not exist")
    from shortcutlab.store.sweep_layout import SweepLayout

    if SweepLayout.is_sweep(run_dir):  # a sweep's report is its comparison page
        from shortcutlab.report.compare import build_comparison

        console.print(f"report: {build_comparison([run_dir], run_dir)}")
        return
    path = build_report(run_dir)
    console.print(f"report: {path}")


@app.command()
def datasets() -> None:
    """List the embedded datasets with their attributes."""
    from shortcutlab.data.sources import describe_synthetic

    table = Table(
        title="embedded datasets (plus 'csv' and 'npz' for your own data, and the adapters of "
        "docs/your-data.md for public data sets)"
    )
    for col in ("name", "channels", "task (y)", "attributes", "ROI"):
        table.add_column(col)
    for d in describe_synthetic():
        attrs = "\n".join(f"{k}: {v}" for k, v in d["attributes"].items())
        table.add_row(d["name"], str(d["channels"]), d["task"], attrs, d["roi"])
    out_console.print(table)


@app.command()
def methods() -> None:
    """List the methods with their hyperparameters and defaults."""
    from rich.markup import escape

    from shortcutlab.methods import METHODS

    table = Table(title="methods (hyperparameters: set under `hparams.<method>` in the config)")
    table.add_column("method")
    table.add_column("what it does")
    table.add_column("hyperparameters (type, ? = may be null; default)")
    for name, cls in sorted(METHODS.items()):
        hp = "\n".join(
            escape(f"{k}: {v.type_label} = {v.default!r}  {v.help}")
            for k, v in cls.hparam_spec().items()
        )
        table.add_row(name, cls.summary, hp)
    out_console.print(table)


@app.command()
def debias(
    checkpoint: Path = typer.Argument(..., help="checkpoint.pt of a finished run"),
    data: Path = typer.Option(..., "--data", help="the config the checkpoint was trained with"),
    attribute: str = typer.Option(None, "--attribute", help="sensitive attribute (default: first)"),
    external_fraction: float = typer.Option(
        None,
        "--external-fraction",
        help="use this fraction of train's size from the external split (default: all of it)",
    ),
    mask: str = typer.Option(None, "--mask", help="soft (SWiFT, default) | hard (BMFT)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
) -> None:
    """SWiFT on a trained checkpoint with the data's external split: before/after, compute."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.posthoc import debias_checkpoint

    if mask is not None and mask not in ("soft", "hard"):
        _fail(f"--mask must be soft or hard, not '{mask}'")
    cfg = load_config(data)
    results, compute = debias_checkpoint(
        checkpoint, cfg, out, attribute, mask, external_fraction=external_fraction
    )
    _print_before_after(results, compute)
    console.print(f"results: {out / 'results.csv'}\nreport:  {out / 'report.html'}")


def _print_before_after(results, compute) -> None:
    attr = compute["attribute"]
    keep = [("y", "accuracy"), ("y", "auroc"), ("y", "worst_group_accuracy"), (attr, "eodds_gap")]
    table = Table(title=f"SWiFT on {attr}: before -> after (%)")
    for col in ("split", "metric", *dict.fromkeys(results["method"])):
        table.add_column(col)
    for split in ("val", "inv", "bal", "test"):
        for target, metric in keep:
            part = results[
                (results["split"] == split)
                & (results["target"] == target)
                & (results["metric"] == metric)
            ]
            if not part.empty:
                table.add_row(split, metric, *[f"{100 * v:.1f}" for v in part["value"]])
    out_console.print(table)
    selected = compute.get("selected")
    if selected == "input":
        out_console.print(
            "selected: input (no SWiFT epoch kept val AUROC within the allowed drop while "
            "narrowing the val gap; the 'after' model is the input model)"
        )
    elif selected:
        out_console.print(f"selected: {selected}")
    frac = compute.get("samples_fraction")
    if frac is not None:
        out_console.print(
            f"compute: {compute['swift_samples']} samples = {100 * frac:.1f}% of the original "
            f"run's {compute['original_samples']}; {compute['swift_seconds']:.1f}s"
        )


@app.command()
def audit(
    checkpoint: Path = typer.Argument(..., help="checkpoint.pt of a finished run"),
    data: Path = typer.Option(..., "--data", help="the config the checkpoint was trained with"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    counterfactual: str = typer.Option(
        "auto",
        "--counterfactual",
        help="exact | generated | none: flip rates when one factor changes (default: exact on "
        "the embedded phantoms; generated: the Latent Drifting generator, any data)",
    ),
    attribution: str = typer.Option(
        None,
        "--attribution",
        help="gradcam,ig: attribution maps scored against the phantom's factor masks "
        "(default: both on the embedded phantoms; none to skip)",
    ),
    cf_limit: int = typer.Option(
        None, "--cf-limit", help="counterfactual reliance on at most N rows per split"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Per-group metrics, fairness gaps with bootstrap CIs, probe leakage, counterfactual
    reliance and attribution maps of a checkpoint."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.posthoc import audit_checkpoint

    cfg = load_config(data)
    methods = None
    if attribution is not None:
        methods = tuple(m for m in attribution.split(",") if m and m != "none")
    with _progress(quiet) as update:
        results = audit_checkpoint(checkpoint, cfg, out, counterfactual, methods, cf_limit, update)
    _print_audit(results)
    console.print(f"results: {out / 'results.csv'}\nreport:  {out / 'report.html'}")


def _print_audit(results) -> None:
    """The audit's headline: accuracy and worst group per split, each attribute's gaps with
    their bootstrap CIs and its probe leakage (chance = 1 / number of values)."""
    r = results.set_index(["split", "target", "metric"])["value"]
    splits = [s for s in ("val", "inv", "bal", "test", "external") if (s, "y", "accuracy") in r]
    name = str(results["method"].iloc[0]) if len(results) else "model"
    table = Table(title=f"audit of {name}: % on each split (gap CIs: 95% bootstrap)")
    for col in ("split", "what", "value"):
        table.add_column(col, overflow="fold")
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    for split in splits:
        table.add_row(split, "accuracy", pct(r[(split, "y", "accuracy")]))
        if (split, "y", "worst_group_accuracy") in r:
            table.add_row("", "worst group accuracy", pct(r[(split, "y", "worst_group_accuracy")]))
        attrs = [t for t in dict.fromkeys(results["target"]) if t != "y"]
        for attr in attrs:
            for gap in ("dp_gap", "eodds_gap"):
                if (split, attr, gap) in r:
                    lo = r.get((split, attr, f"{gap}_ci_low"), float("nan"))
                    hi = r.get((split, attr, f"{gap}_ci_high"), float("nan"))
                    value = f"{pct(r[(split, attr, gap)])} [{pct(lo)}, {pct(hi)}]"
                    table.add_row("", f"{attr} {gap} (0 = fair)", value)
            if (split, attr, "probe_accuracy[f]") in r:
                leak = pct(r[(split, attr, "probe_accuracy[f]")])
                table.add_row("", f"{attr} probe leakage (features -> {attr})", leak)
        for attr in ["y", *attrs]:
            if (split, attr, "cf_flip_rate") in r:
                lo = r.get((split, attr, "cf_flip_rate_ci_low"), float("nan"))
                hi = r.get((split, attr, "cf_flip_rate_ci_high"), float("nan"))
                value = f"{pct(r[(split, attr, 'cf_flip_rate')])} [{pct(lo)}, {pct(hi)}]"
                table.add_row("", f"flip rate when only {attr} changes", value)
    for (split, target, metric), value in r.items():
        if metric.startswith("attribution_mass["):
            share = r.get((split, target, "factor_mask_share"), float("nan"))
            what = f"{metric[len('attribution_mass[') : -1]} mass on {target}'s pixels"
            table.add_row(split, what, f"{pct(value)} (uniform: {pct(share)})")
    out_console.print(table)


# ---------------------------------------------------------------------------------------------
# sweep and compare (experiment/sweep.py, experiment/selection.py, report/compare.py)
# ---------------------------------------------------------------------------------------------
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    args: list[str] = typer.Argument(
        None, help="[CONFIG.yaml] then key.sub=value overrides", show_default=False
    ),
    out: Path = typer.Option(..., "--out", "-o", help="sweep folder"),
    preset: str = typer.Option(None, "--preset", help="quick | full"),
    trials: int = typer.Option(None, "--trials", help="draws per method (default sweep.trials)"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    address: str = typer.Option(None, "--address", help="join this Ray cluster (with ray)"),
    oracle: bool = typer.Option(False, "--oracle", help="add the test-selected tables, labelled"),
    track: str = typer.Option(None, "--track", help="mlflow: log to OUT/mlruns (file store)"),
    track_uri: str = typer.Option(None, "--track-uri", help="MLflow tracking URI (file://...)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
) -> None:
    """Every (method, hyperparameter draw, seed) of a config as one trial, here or on Ray;
    merged results, trials.csv, selection on val and statistics across seeds in report.html."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.sweep import EXECUTORS
    from shortcutlab.report.compare import build_comparison

    config_path, overrides = _config_args(ctx, args, preset)
    if executor not in EXECUTORS:
        _fail(f"--executor must be local or ray, not '{executor}'")
    if trials is not None and trials < 1:
        _fail(f"--trials must be 1 or more, not {trials}")
    if track is not None and track != "mlflow":
        _fail(f"--track supports mlflow, not '{track}'")
    if track:
        from shortcutlab.tracking import mlflow_module

        mlflow_module()  # a missing extra fails now, not after the sweep
    if preset == "full":  # every embedded dataset, one sweep folder each, then one comparison
        folders = []
        for name, cfg in _full_configs(config_path, overrides):
            console.print(f"[bold]{name}[/]")
            folders.append(out / name)
            options = (executor, address, trials, oracle, track, track_uri, quiet)
            _sweep_one(cfg, out / name, *options, exit_on_failure=False)
        report = build_comparison(folders, out, oracle=oracle)
        console.print(f"comparison: {report}")
        if any(_failed_trials(f) for f in folders):
            raise typer.Exit(1)
        return
    cfg = load_config(config_path, preset, overrides)
    _sweep_one(cfg, out, executor, address, trials, oracle, track, track_uri, quiet)


def _sweep_one(
    cfg,
    out: Path,
    executor: str,
    address: str | None,
    trials: int | None,
    oracle: bool,
    track: str | None,
    track_uri: str | None,
    quiet: bool,
    exit_on_failure: bool = True,
) -> int:
    """One sweep folder: trials, report, selected table, tracking; the number of failed trials
    (exit status 1 when ``exit_on_failure`` and one failed)."""
    from shortcutlab.experiment.sweep import run_sweep
    from shortcutlab.report.compare import build_comparison

    def say(msg: str) -> None:
        if "WARNING" in msg or "FAILED" in msg:
            console.print(f"[bold yellow]{msg}[/]", highlight=False, soft_wrap=True)
        elif not quiet:
            console.print(f"[dim]{msg}[/]", highlight=False)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=console, disable=quiet) as bar:
            task = bar.add_task("trials", total=None)

            def on_progress(done: int, running: int, failed: int, total: int) -> None:
                text = f"trials: {done} done, {running} running, {failed} failed"
                bar.update(task, description=text, completed=done + failed, total=total)

            results = run_sweep(
                cfg,
                out,
                executor=executor,
                address=address,
                trials=trials,
                on_progress=on_progress,
                on_event=say,
            )
    except KeyboardInterrupt:
        raise _interrupted(
            f"finished trials in {out} are kept (results.csv and trials.csv list them); the others "
            "continue from their last epoch"
        ) from None
    report = build_comparison([out], out, oracle=oracle)
    _print_selected(out, cfg.select)
    if track:
        from shortcutlab.tracking import log_sweep

        uri = log_sweep(out, track_uri)
        console.print(f"mlflow:  {uri}")
    console.print(f"results: {out / 'results.csv'} ({len(results)} rows)")
    console.print(f"trials:  {out / 'trials.csv'}\nreport:  {report}")
    failed = _failed_trials(out)
    if failed:
        console.print(f"[bold red]{failed} trial(s) failed[/] (trials.csv names the error)")
        if exit_on_failure:
            raise typer.Exit(1)
    return failed


def _failed_trials(out: Path) -> int:
    from shortcutlab.experiment.sweep import read_trials

    return int((read_trials(out)["status"] == "failed").sum())


def _print_selected(out: Path, rule: str) -> None:
    from shortcutlab.experiment import selection
    from shortcutlab.report.compare import read_study, selected_html_table

    study = read_study(out)
    if study.results.empty:
        return
    from shortcutlab.report.figures import method_order

    order = method_order(study.config, study.results["method"])
    table = selected_html_table(selection.selected_table(study.results, rule, order=order), "val")
    shown = Table(title=f"{out}: selected on val ({rule}); % mean ± std [95% CI] over seeds")
    shown.add_column("method", no_wrap=True)
    keep = [c for c in table.columns if c in ("trial", "seeds", "inv acc", "bal worst group")]
    for col in keep:
        shown.add_column(col, justify="right", overflow="fold")
    for method, row in table.iterrows():
        shown.add_row(str(method), *[str(row[c]) for c in keep])
    out_console.print(shown)


@app.command()
def compare(
    dirs: list[Path] = typer.Argument(..., help="run or sweep folders"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for report.html"),
    oracle: bool = typer.Option(False, "--oracle", help="add the test-selected tables, labelled"),
) -> None:
    """One report over several runs or sweeps: selected tables with CIs, paired differences
    against ERM, hyperparameter sensitivity, mean ranks (Friedman, Nemenyi)."""
    from shortcutlab.report.compare import build_comparison

    for d in dirs:
        if not d.is_dir():
            _fail(f"folder {d} does not exist")
    report = build_comparison(dirs, out, oracle=oracle)
    console.print(f"report: {report}")


@app.command()
def counterfactual(
    config: Path = typer.Argument(..., help="experiment config (its data and hparams)"),
    flip: str = typer.Option(..., "--flip", help="the field to change: y or an attribute"),
    to: int = typer.Option(None, "--to", help="the new value, for a field with more than two"),
    delta: str = typer.Option("auto", "--delta", help="auto (grid search on train) or a number"),
    out: Path = typer.Option(..., "--out", "-o", help="a new folder for the counterfactual set"),
    limit: int = typer.Option(200, "--limit", help="source images (from inv, else val)"),
    model: Path = typer.Option(None, "--model", help="generator folder (default: the cache)"),
    edit_mask: bool = typer.Option(
        False, "--edit-mask", help="keep the source's pixels outside the data's ROI masks"
    ),
    instruments: Path = typer.Option(
        None,
        "--instruments",
        help="instruments.pt of an earlier call: score with it (one FID feature space)",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Latent Drifting counterfactuals: each image with one field flipped, and their scores."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.counterfactual import check_request, counterfactual_dataset

    if not config.is_file():
        _fail(f"config file {config} does not exist")
    cfg = load_config(str(config))
    check_request(cfg, flip, to, delta)
    with _progress(quiet) as update:
        metrics = counterfactual_dataset(
            cfg, flip, out, to, delta, limit, model, edit_mask, update, instruments=instruments
        )
    keys = ("delta", "fid", "fid_delta0", "effectiveness", "preservation", "true_cf_l1")
    summary = ", ".join(
        f"{k} {metrics[k]:.3g}" for k in keys if isinstance(metrics.get(k), (int, float))
    )
    console.print(f"{metrics['n_counterfactuals']} counterfactuals: {out / 'metadata.csv'}")
    console.print(summary, highlight=False)


@app.command()
def ground(
    config: Path = typer.Argument(..., help="the dataset's config (CONFIG.yaml)"),
    token: str = typer.Option(..., "--token", help="y | ATTR: the condition token to ground"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    model: Path = typer.Option(
        None, "--model", help="a saved diffusion model (default: OUT/model, trained if absent)"
    ),
    split: str = typer.Option("val", "--split", help="the split whose images are grounded"),
    n: int = typer.Option(32, "--n", help="how many images (those with TOKEN = 1)"),
    steps: int = typer.Option(50, "--steps", help="DDIM inversion steps (the paper: 300)"),
    layers: str = typer.Option(
        None, "--layers", help="cross-attention layer indices, e.g. 5,6 (default: the last)"
    ),
    classifier: Path = typer.Option(
        None, "--classifier", help="checkpoint.pt: its Grad-CAM maps scored on the same images"
    ),
    train_steps: int = typer.Option(2000, "--train-steps", help="diffusion training steps"),
    autoencoder_steps: int = typer.Option(
        300, "--autoencoder-steps", help="its autoencoder's training steps (before those)"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Zero-shot grounding from the diffusion model's cross-attention: heatmaps, scores, overlay."""
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.grounding import ground_dataset
    from shortcutlab.generative.grounding import GroundingParams

    try:
        chosen = tuple(int(i) for i in layers.split(",")) if layers else None
    except ValueError:
        _fail(f"--layers takes comma-separated integers, not '{layers}'")
    params = GroundingParams(steps=steps, layers=chosen)
    with _progress(quiet) as update:
        frame = ground_dataset(
            load_config(config),
            token,
            out,
            model,
            split,
            n,
            params,
            classifier,
            train_steps,
            update,
            autoencoder_steps,
        )
    if len(frame) and "grounding_pixel_auroc" in frame:
        mean = frame[frame["image"] == "mean"].iloc[0]
        for name in ("grounding", "gradcam"):
            if f"{name}_pixel_auroc" in frame:
                out_console.print(
                    f"{name}: pixel AUROC {mean[f'{name}_pixel_auroc']:.3f}, CNR "
                    f"{mean[f'{name}_cnr']:.3f}, mIoU {mean[f'{name}_miou']:.3f}, mass in mask "
                    f"{mean[f'{name}_mass_in_mask']:.3f} (mask share {mean['mask_share']:.3f})"
                )
    console.print(f"heatmaps: {out / 'heatmaps'}\nscores:   {out / 'grounding.csv'}")


def main() -> None:
    try:
        app(standalone_mode=True)
    except ShortcutlabError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted; re-run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
