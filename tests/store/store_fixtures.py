"""Helpers for the store tests: small suites and per-second load frames."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kubexp.records import LOAD_SECOND_COLUMNS
from kubexp.suite import Suite, load_suite

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def make_suite(folder: Path, name: str = "mini", workers: list[int] | None = None, repetitions: int = 2,
               **extra: object) -> Suite:
    document = {"suite": name, "platform": "local", "repetitions": repetitions, "seed": 7,
                "defaults": {"duration_s": 10}, "matrix": {"workers": workers or [1, 2, 3]}, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_suite(path)


def load_frame(seconds: int = 10, successes: int = 50, failures: int = 1, start: int = 0) -> pd.DataFrame:
    """A per-second load frame with the shared columns; latency is empty where no request ran."""
    t = np.arange(start, start + seconds)
    ok = np.full(seconds, successes)
    bad = np.full(seconds, failures)
    frame = pd.DataFrame({
        "t": t, "requests": ok + bad, "successes": ok, "failures": bad, "failures_4xx": 0,
        "failures_5xx": bad, "failures_other": 0, "bytes": (ok + bad) * 1000, "threads": 4,
    })
    for column in LOAD_SECOND_COLUMNS:
        if column.endswith("_ms"):
            frame[column] = np.where(frame["requests"] > 0, 10.0 + t, np.nan)
    return frame[list(LOAD_SECOND_COLUMNS)]
