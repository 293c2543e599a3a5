"""The paths of a sweep folder (``shortcutlab sweep --out OUT``; docs/contracts.md, "Sweep
folder").

``OUT`` holds what an experiment folder holds at its top (``config.yaml``, ``results.csv`` with a
``trial`` column, ``report.html``, ``split_counts.csv``, ``dataset.csv``, ``samples.png``,
``figures/``, ``.lock``; ``store/layout.py``'s ``ExperimentLayout``), plus ``trials.csv`` (one row
per (method, trial, seed): status, seconds, hyperparameters) and one run folder per trial,
``OUT/trials/<method>/draw_<i>/seed_<S>/``, laid out as any run (``RunLayout``: checkpoint,
log, results, ``done.json`` last; ``resume.pt`` while it trains; its figures in ``figures/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shortcutlab.store.layout import ExperimentLayout, RunLayout

TRIALS_DIR = "trials"


@dataclass(frozen=True)
class SweepLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def experiment(self) -> ExperimentLayout:
        """The top-level files, shared with ``shortcutlab run``'s folders."""
        return ExperimentLayout(self.root)

    @property
    def trials_csv(self) -> Path:
        return self.root / "trials.csv"

    def trial(self, method: str, draw: int, seed: int) -> RunLayout:
        path = self.root / TRIALS_DIR / method / f"draw_{draw}" / f"seed_{seed}"
        return RunLayout(path, path / "figures", method, seed)

    @staticmethod
    def is_sweep(root: str | Path) -> bool:
        return (Path(root) / "trials.csv").is_file()
