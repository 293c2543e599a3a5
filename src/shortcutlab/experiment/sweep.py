"""Sweeps: every (method, hyperparameter draw, seed) of a config is one trial, run in order in
this process (``local``) or as Ray tasks (``ray``) (docs/contracts.md "Sweep folder";
docs/methods.md "Sweeps, selection and statistics").

Draws follow DomainBed's registry: each ``Hparam`` with a ``search`` distribution is drawn from
a stream of its own, seeded by (method, hyperparameter name, draw number), so adding a
hyperparameter never changes the others' draws; draw 0 is the defaults. A hyperparameter the
config sets (``hparams.<method>`` or a method entry's ``params``) is fixed, not drawn.

Each trial is the runner's ``train_one`` with ``resume=True`` (``experiment/runner.py``): an epoch
checkpoint after every epoch, ``done.json`` written last. A re-run skips finished trials and
continues interrupted ones from their last epoch; a Ray trial whose worker dies is retried by
Ray (``sweep.max_retries``) and continues the same way. The data is loaded (and its image cache
built) once before any trial; each Ray worker process then opens the cache once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import ExperimentConfig, MethodSpec
from shortcutlab.experiment.hparams import method_hparams, validate_names
from shortcutlab.methods import get_method
from shortcutlab.store.layout import RunLayout
from shortcutlab.store.results import (
    RESULT_COLUMNS,
    read_results,
    write_csv_atomic,
    write_text_atomic,
)
from shortcutlab.store.sweep_layout import SweepLayout

Executor = Literal["local", "ray"]
EXECUTORS = ("local", "ray")
#: (trials done, running, failed, total)
SweepProgress = Callable[[int, int, int, int], None]
#: called in the trial's process with (trial, steps done, total steps); tests inject faults
TrialHook = Callable[["Trial", int, int], None]

TRIAL_COLUMNS = ["method", "trial", "seed", "status", "seconds", "error"]


# ---------------------------------------------------------------------------------------------
# draws
# ---------------------------------------------------------------------------------------------
def stream_seed(*parts: object) -> int:
    """A stable 64-bit seed of ``parts`` (sha256; Python's ``hash`` changes between processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def fixed_hparams(spec: MethodSpec, cfg: ExperimentConfig) -> set[str]:
    """The hyperparameters the config sets for this method entry (never drawn)."""
    fixed = set(cfg.hparams.get(spec.registry_name, {})) | set(spec.params)
    if spec.name != spec.registry_name:
        fixed |= set(cfg.hparams.get(spec.name, {}))
    return fixed


def draw_hparams(method: str, draw: int, fixed: set[str] | frozenset[str] = frozenset()) -> dict:
    """Draw ``draw`` of the registry method ``method``'s searchable hyperparameters ({} for
    draw 0, the defaults); each from ``numpy.random.default_rng(stream_seed(method, name,
    draw))``."""
    if draw < 0:
        raise ShortcutlabError(f"a hyperparameter draw is numbered from 0, not {draw}")
    if draw == 0:
        return {}
    out = {}
    for name, hp in get_method(method).hparam_spec().items():
        if hp.search is None or name in fixed:
            continue
        rng = np.random.default_rng(stream_seed(method, name, draw))
        out[name] = hp.coerce(hp.search(rng), f"the search distribution of {method}.{name}")
    return out


@dataclass(frozen=True)
class Trial:
    """One (method entry, draw, seed); ``params``: the draw, set as the entry's params."""

    method: str
    draw: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.method} trial {self.draw} seed {self.seed}"


def plan_trials(cfg: ExperimentConfig, trials: int | None = None) -> list[Trial]:
    """Every (method, draw, seed) of the config, methods in config order, then draws, then
    seeds. ``trials``: draws per method (default ``sweep.trials``)."""
    n = cfg.sweep.trials if trials is None else trials
    if n < 1:
        raise ShortcutlabError(f"--trials must be 1 or more, not {n}")
    out = []
    for spec in cfg.methods:
        fixed = fixed_hparams(spec, cfg)
        for draw in range(n):
            params = draw_hparams(spec.registry_name, draw, fixed)
            out += [Trial(spec.name, draw, seed, params) for seed in cfg.seeds]
    return out


def trial_config(cfg: ExperimentConfig, trial: Trial) -> tuple[ExperimentConfig, MethodSpec]:
    """The config a trial runs: its method entry with the draw merged into ``params``."""
    spec = next(m for m in cfg.methods if m.name == trial.method)
    spec = spec.model_copy(update={"params": {**spec.params, **trial.params}})
    methods = [spec if m.name == trial.method else m for m in cfg.methods]
    return cfg.model_copy(update={"methods": methods}), spec


def trial_hparams(cfg: ExperimentConfig, trial: Trial) -> dict[str, Any]:
    """Every hyperparameter value the trial trains with (defaults, config, draw)."""
    tcfg, spec = trial_config(cfg, trial)
    return method_hparams(spec, tcfg)


# ---------------------------------------------------------------------------------------------
# one trial, in whichever process runs it
# ---------------------------------------------------------------------------------------------
_TABLES: dict[str, Any] = {}  # dataset config (JSON) -> ImageTable, per process


def _table(cfg: ExperimentConfig):
    from shortcutlab.experiment.runner import load_dataset

    key = cfg.dataset.model_dump_json()
    if key not in _TABLES:
        _TABLES.clear()  # one data set per process at a time
        _TABLES[key] = load_dataset(cfg.dataset)
    return _TABLES[key]


def run_trial(
    cfg: ExperimentConfig,
    trial: Trial,
    layout: RunLayout,
    *,
    threads: int | None = None,
    hook: TrialHook | None = None,
) -> float:
    """Train one trial into ``layout`` (continuing an epoch checkpoint); its seconds."""
    from shortcutlab.experiment.runner import train_one

    tcfg, spec = trial_config(cfg, trial)
    if threads is not None:
        tcfg = tcfg.model_copy(
            update={"train": tcfg.train.model_copy(update={"num_threads": threads})}
        )
    progress = None
    if hook is not None:

        def progress(_label: str, done: int, total: int) -> None:
            hook(trial, done, total)

    t0 = time.perf_counter()
    train_one(_table(tcfg), tcfg, spec, trial.seed, layout, progress, resume=True)
    return time.perf_counter() - t0


def _ray_trial(
    cfg_json: str, trial: Trial, run_dir: str, threads: int, hook: TrialHook | None
) -> float:
    """The Ray task: one trial in a worker process."""
    cfg = ExperimentConfig.model_validate_json(cfg_json)
    path = Path(run_dir)
    layout = RunLayout(path, path / "figures", trial.method, trial.seed)
    return run_trial(cfg, trial, layout, threads=threads, hook=hook)


# ---------------------------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------------------------
@dataclass
class _Status:
    status: str = "pending"  # pending | done | failed
    seconds: float = float("nan")
    error: str = ""


def run_sweep(
    cfg: ExperimentConfig,
    out: str | Path,
    *,
    executor: Executor = "local",
    address: str | None = None,
    trials: int | None = None,
    on_progress: SweepProgress | None = None,
    on_event: Callable[[str], None] | None = None,
    hook: TrialHook | None = None,
) -> pd.DataFrame:
    """Run every trial of ``cfg`` into ``out`` (``SweepLayout``); return the merged results
    (a ``trial`` column added) of every finished trial; ``trials.csv`` lists every trial."""
    from shortcutlab.experiment.runner import _check_resumable, output_lock

    if executor not in EXECUTORS:
        raise ShortcutlabError(f"--executor must be local or ray, not '{executor}'")
    if address and executor != "ray":
        raise ShortcutlabError("--address joins a Ray cluster: use it with --executor ray")
    if trials is not None:
        cfg = cfg.model_copy(update={"sweep": cfg.sweep.model_copy(update={"trials": trials})})
    validate_names(cfg)
    plan = plan_trials(cfg)
    for trial in plan:  # a draw the method refuses fails here, before anything is written
        trial_hparams(cfg, trial)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layout = SweepLayout(out)
    say = on_event or (lambda _msg: None)
    with output_lock(out):
        _check_resumable(layout.experiment, cfg)
        status = {t: _Status() for t in plan}
        for t in plan:
            run = layout.trial(t.method, t.draw, t.seed)
            if run.is_finished():
                seconds = ((run.read_done() or {}).get("compute") or {}).get("seconds")
                status[t] = _Status("done", float(seconds or "nan"))
        pending = [t for t in plan if status[t].status != "done"]
        _report(status, on_progress, 0)
        if len(pending) < len(plan):
            say(f"{len(plan) - len(pending)} of {len(plan)} trials finished before, skipped")
        try:
            if pending:
                _prepare_data(cfg, layout, say)
                run = _run_ray if executor == "ray" else _run_local
                run(cfg, layout, pending, status, on_progress, say, hook, address)
        finally:  # also on Ctrl-C: the tables list what is finished, and only that
            results = _write_tables(cfg, layout, plan, status)
    return results


def _prepare_data(cfg: ExperimentConfig, layout: SweepLayout, say) -> None:
    """Load the data once (building its image cache), write the folder's data files and
    config."""
    from shortcutlab.experiment.runner import _load_announced

    _TABLES[cfg.dataset.model_dump_json()] = _load_announced(cfg, layout.experiment, say)
    write_text_atomic(cfg.dump(), layout.experiment.config)


def _report(status: dict[Trial, _Status], on_progress, running: int) -> None:
    if on_progress is None:
        return
    values = [s.status for s in status.values()]
    on_progress(values.count("done"), running, values.count("failed"), len(values))


def _run_local(cfg, layout, pending, status, on_progress, say, hook, _address) -> None:
    for trial in pending:
        _report(status, on_progress, 1)
        try:
            run = layout.trial(trial.method, trial.draw, trial.seed)
            seconds = run_trial(cfg, trial, run, hook=hook)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded; the other trials go on
            status[trial] = _Status("failed", error=_one_line(exc))
            say(f"{trial.label}: FAILED {status[trial].error}")
        else:
            status[trial] = _Status("done", seconds)
            say(f"{trial.label}: done ({seconds:.0f}s)")
    _report(status, on_progress, 0)


def _one_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a Ray task error carries the trial's own exception
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def ray_module():
    """``ray``, or a one-sentence error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ShortcutlabError(
            "--executor ray needs Ray: pip install 'shortcutlab[sweep]' (make install does)"
        ) from None
    return ray


def _run_ray(cfg, layout, pending, status, on_progress, say, hook, address) -> None:
    ray = ray_module()
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray on this machine, no dashboard
            ray.init(include_dashboard=False, log_to_driver=False)
        started = True
    res = cfg.sweep.resources
    threads = max(1, int(res.num_cpus))
    task = ray.remote(_ray_trial).options(
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus,
        max_retries=cfg.sweep.max_retries,
        retry_exceptions=False,
    )
    cfg_json = cfg.model_dump_json()
    futures = {}
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        capacity = max(1, int(cpus // res.num_cpus))
        for trial in pending:
            run_dir = str(layout.trial(trial.method, trial.draw, trial.seed).dir.resolve())
            futures[task.remote(cfg_json, trial, run_dir, threads, hook)] = trial
        say(f"ray: {len(futures)} trials on {cpus:g} CPUs, {capacity} at a time")
        while futures:
            _report(status, on_progress, min(len(futures), capacity))
            ready, _ = ray.wait(list(futures), num_returns=1, timeout=1.0)
            for ref in ready:
                trial = futures.pop(ref)
                try:
                    seconds = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - recorded; the other trials go on
                    status[trial] = _Status("failed", error=_one_line(exc))
                    say(f"{trial.label}: FAILED {status[trial].error}")
                else:
                    status[trial] = _Status("done", float(seconds))
                    say(f"{trial.label}: done ({seconds:.0f}s)")
        _report(status, on_progress, 0)
    finally:
        for ref in futures:  # Ctrl-C: stop what still runs; its folder has no done.json
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _write_tables(
    cfg: ExperimentConfig, layout: SweepLayout, plan: list[Trial], status: dict[Trial, _Status]
) -> pd.DataFrame:
    """``results.csv`` (every finished trial's rows, ``trial`` after ``method``) and
    ``trials.csv`` (every planned trial: status, seconds, error, hyperparameters)."""
    frames, rows = [], []
    for t in plan:
        run = layout.trial(t.method, t.draw, t.seed)
        s = status[t]
        if s.status != "done" and run.is_finished():
            s = _Status("done", s.seconds)
        if s.status == "done":
            df = read_results(run.results)
            df.insert(1, "trial", t.draw)
            frames.append(df)
        hp = trial_hparams(cfg, t)
        row = {"method": t.method, "trial": t.draw, "seed": t.seed, "status": s.status}
        row.update(seconds=s.seconds, error=s.error)
        row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in hp.items()})
        rows.append(row)
    columns = ["method", "trial", *RESULT_COLUMNS[1:]]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    write_csv_atomic(results, layout.experiment.results)
    write_csv_atomic(pd.DataFrame(rows), layout.trials_csv)
    return results


def read_trials(root: str | Path) -> pd.DataFrame:
    """``trials.csv`` of a sweep folder."""
    path = SweepLayout(root).trials_csv
    if not path.is_file():
        raise ShortcutlabError(f"{root} has no trials.csv; is it a sweep folder?")
    return pd.read_csv(path)
