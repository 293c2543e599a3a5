"""The one owner of every path in an output folder (docs/contracts.md, "Output folder").

An experiment folder ``OUT`` holds ``config.yaml``, ``results.csv``, ``summary.md``,
``report.html``, ``split_counts.csv``, ``dataset.csv``, ``samples.png``, ``figures/`` (the runs' figures and the
report's ``report_<name>.pdf``/``.png``) and one folder per run
``OUT/<method>/seed_<S>/`` with ``checkpoint.pt``, ``log.jsonl``, ``results.csv`` and, written
last, ``done.json``. A post-hoc command (``debias``, ``audit``) writes one run straight into its
``--out`` folder: ``RunLayout.single(OUT, ...)``. Nobody else computes these paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Report figures are ``figures/report_<name>.pdf`` and ``.png``; the runner's own figures are
#: ``figures/<kind>_<method>_seed<S>.png``.
REPORT_FIGURE_PREFIX = "report_"


@dataclass(frozen=True)
class RunLayout:
    """The files of one (method, seed) run, and where its figures go."""

    dir: Path
    figures_dir: Path
    method: str
    seed: int

    @classmethod
    def single(cls, out: str | Path, method: str, seed: int) -> RunLayout:
        """A run written straight into ``out`` (post-hoc commands), figures in ``out/figures``."""
        out = Path(out)
        return cls(out, out / "figures", method, seed)

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.dir / "log.jsonl"

    @property
    def results(self) -> Path:
        return self.dir / "results.csv"

    @property
    def done(self) -> Path:
        return self.dir / "done.json"

    def is_finished(self) -> bool:
        return self.done.exists() and self.results.exists()

    def read_done(self) -> dict[str, Any] | None:
        """``done.json`` as a dict; None when it is absent or unreadable (an interrupted run)."""
        try:
            record = json.loads(self.done.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def read_log(self) -> list[dict[str, Any]]:
        """``log.jsonl``: one dict per epoch; [] when absent; unreadable lines are skipped."""
        if not self.log.is_file():
            return []
        entries = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def file(self, name: str) -> Path:
        """A file of the run's own (``swift.json``, ``generated.json``)."""
        return self.dir / name

    def figure(self, kind: str, ext: str = "png") -> Path:
        """``figures/<kind>_<method>_seed<S>.<ext>`` of the experiment; the folder is created."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{kind}_{self.method}_seed{self.seed}.{ext}"


@dataclass(frozen=True)
class ExperimentLayout:
    """The files of an experiment folder (``shortcutlab run --out OUT``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def results(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def split_counts(self) -> Path:
        return self.root / "split_counts.csv"

    @property
    def dataset_csv(self) -> Path:
        """The resolved rows of the data: path, y, attributes (category names), split, patient."""
        return self.root / "dataset.csv"

    @property
    def samples(self) -> Path:
        return self.root / "samples.png"

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def run(self, method: str, seed: int) -> RunLayout:
        return RunLayout(self.root / method / f"seed_{seed}", self.figures_dir, method, seed)

    def runs(self) -> Iterator[RunLayout]:
        """Every run folder present (``<method>/seed_<S>/``), sorted by path."""
        for path in sorted(self.root.glob("*/seed_*")):
            seed = path.name.removeprefix("seed_")
            if path.is_dir() and seed.lstrip("-").isdigit():
                yield self.run(path.parent.name, int(seed))

    def report_figure(self, name: str, ext: str) -> Path:
        """``figures/report_<name>.<ext>``, a figure of the report; the folder is created."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{REPORT_FIGURE_PREFIX}{name}.{ext}"

    def figures(self) -> list[Path]:
        """The PNGs that runs and commands wrote into ``figures/`` (not the report's own)."""
        return [
            p
            for p in sorted(self.figures_dir.glob("*.png"))
            if not p.name.startswith(REPORT_FIGURE_PREFIX)
        ]
