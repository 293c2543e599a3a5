"""What a run leaves on disk, below every other layer: folder layout, results IO, atomic writes.

``experiment/`` (runner, posthoc, generate), ``methods/`` and ``report/`` all import from here;
nothing here imports them (docs/contracts.md describes the files).
"""

from shortcutlab.store.layout import ExperimentLayout, RunLayout
from shortcutlab.store.results import (
    RESULT_COLUMNS,
    make_results,
    read_results,
    write_csv_atomic,
    write_text_atomic,
)

__all__ = [
    "RESULT_COLUMNS",
    "ExperimentLayout",
    "RunLayout",
    "make_results",
    "read_results",
    "write_csv_atomic",
    "write_text_atomic",
]
