"""Progress lines for the benchmark scripts: ``printer(parts)`` returns ``update(stage, done,
total)`` (the toolkit's progress callback) that prints a timed line about ``parts`` times per
stage."""

from __future__ import annotations

import time


def printer(parts: int = 10):
    last: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        step = max(1, total // parts)
        if done == total or done // step != last.get(stage, -1):
            last[stage] = done // step
            print(f"{time.strftime('%H:%M:%S')} {stage}: {done}/{total}", flush=True)

    return update
