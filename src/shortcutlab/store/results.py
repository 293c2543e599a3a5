"""The tidy results table of contracts.md: one row per measured number."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

RESULT_COLUMNS = ["method", "seed", "split", "target", "metric", "value"]


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> None:
    """Write via a temporary file and rename, so an interrupted write never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_results(rows: list[dict], method: str, seed: int) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(0, "seed", seed)
    df.insert(0, "method", method)
    return df[RESULT_COLUMNS]


def read_results(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return df
