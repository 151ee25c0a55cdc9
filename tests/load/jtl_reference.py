"""An independent per-second count of a JTL with the csv module: the yardstick for kubexp.load.jtl."""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from kubexp.load.jtl import JMETER_DEFAULT_COLUMNS

ENGINE = re.compile(r"^(\S+:\d+)-")


def nearest_rank(values: list[int], p: int) -> float:
    ordered = sorted(values)
    return float(ordered[math.ceil(p / 100 * len(ordered)) - 1])


def _elapsed_figures(elapsed: list[int], prefix: str = "") -> dict[str, float]:
    """Mean, nearest-rank percentiles and max of a list of elapsed values (NaN for an empty list)."""
    if not elapsed:
        return {f"{prefix}{name}": math.nan for name in
                ("elapsed_mean_ms", "elapsed_p50_ms", "elapsed_p90_ms", "elapsed_p95_ms", "elapsed_p99_ms",
                 "elapsed_max_ms")}
    return {f"{prefix}elapsed_mean_ms": sum(elapsed) / len(elapsed),
            **{f"{prefix}elapsed_p{p}_ms": nearest_rank(elapsed, p) for p in (50, 90, 95, 99)},
            f"{prefix}elapsed_max_ms": float(max(elapsed))}


def _processing_mean(rows: list[dict[str, str]], names: list[str]) -> float:
    """Mean Latency - Connect of the successful rows among `rows`."""
    ok = [row for row in rows if row["success"].lower() == "true"]
    if not ok or "Latency" not in names or "Connect" not in names:
        return math.nan
    return sum(int(row["Latency"]) - int(row["Connect"]) for row in ok) / len(ok)


def _samples(path: Path) -> tuple[list[str], list[tuple[int, int, dict[str, str]]]]:
    """Column names and the well-formed samples (timeStamp, elapsed, row) of a JTL."""
    with open(path, newline="") as handle:
        lines = list(csv.reader(handle))
    if lines and "timeStamp" in lines[0]:
        names, lines = lines[0], lines[1:]
    else:
        names = list(JMETER_DEFAULT_COLUMNS)
    samples = []
    for fields in lines:
        if len(fields) != len(names):
            continue
        row = dict(zip(names, fields, strict=True))
        try:
            stamp, elapsed = int(row["timeStamp"]), int(row["elapsed"])
        except ValueError:
            continue
        if row["success"].lower() not in ("true", "false") or elapsed < 0:
            continue
        samples.append((stamp, elapsed, row))
    return names, samples


def reference_whole(path: Path) -> dict[str, float]:
    """The exact statistics over every well-formed sample (kubexp.records.EXPERIMENT_LOAD_COLUMNS)."""
    names, samples = _samples(path)
    ok = [elapsed for _, elapsed, row in samples if row["success"].lower() == "true"]
    return {"requests": len(samples), "successes": len(ok),
            **_elapsed_figures([elapsed for _, elapsed, _ in samples]), **_elapsed_figures(ok, "success_"),
            "success_processing_mean_ms": _processing_mean([row for _, _, row in samples], names)}


def reference_rows(path: Path, t0_ms: int | None = None) -> dict[int, dict[str, float]]:
    """{t: {column: value}} for every second that has samples; well-formed lines only."""
    names, samples = _samples(path)
    if not samples:
        return {}
    t0 = min(stamp for stamp, _, _ in samples) if t0_ms is None else t0_ms
    seconds: dict[int, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for stamp, elapsed, row in samples:
        seconds[(stamp - t0) // 1000].append((elapsed, row))
    result = {}
    for t, members in seconds.items():
        elapsed = [e for e, _ in members]
        failed = [row for _, row in members if row["success"].lower() == "false"]
        code = [row.get("responseCode", "") for row in failed]
        engines: dict[str, int] = {}
        for _, row in members:
            if "allThreads" in row:
                match = ENGINE.match(row.get("threadName", ""))
                key = match.group(1) if match else ""
                engines[key] = max(engines.get(key, 0), int(row["allThreads"]))
        result[t] = {
            "requests": len(members), "successes": len(members) - len(failed), "failures": len(failed),
            "failures_4xx": sum(1 for c in code if len(c) == 3 and c.startswith("4")),
            "failures_5xx": sum(1 for c in code if len(c) == 3 and c.startswith("5")),
            **_elapsed_figures(elapsed),
            **_elapsed_figures([e for e, row in members if row["success"].lower() == "true"], "success_"),
            "success_processing_mean_ms": _processing_mean([row for _, row in members], names),
            "latency_mean_ms": (sum(int(row["Latency"]) for _, row in members) / len(members)
                                if "Latency" in names else math.nan),
            "connect_mean_ms": (sum(int(row["Connect"]) for _, row in members) / len(members)
                                if "Connect" in names else math.nan),
            "bytes": sum(int(row["bytes"]) for _, row in members) if "bytes" in names else math.nan,
            "threads": sum(engines.values()) if engines else math.nan,
        }
        result[t]["failures_other"] = len(failed) - result[t]["failures_4xx"] - result[t]["failures_5xx"]
    return result


def assert_matches_reference(frame: pd.DataFrame, path: Path, t0_ms: int | None = None,
                             whole: dict[str, float | None] | None = None) -> None:
    """Every second of the reference appears in the frame with equal values; other seconds are empty.
    With `whole` (JtlResult.whole), so do the exact statistics over every sample."""
    if whole is not None:
        for column, value in reference_whole(path).items():
            if math.isnan(value):
                assert whole[column] is None, f"whole {column}: {whole[column]!r} instead of None"
            else:
                assert whole[column] == pytest.approx(value, rel=1e-9, abs=1e-9), f"whole {column}"
    expected = reference_rows(path, t0_ms)
    assert expected, f"{path} has no well-formed sample"
    by_t = frame.set_index("t")
    assert list(by_t.index) == list(range(min(expected), max(expected) + 1))
    for t, row in by_t.iterrows():
        if t not in expected:
            assert row["requests"] == 0, f"second {t}"
            continue
        for column, value in expected[t].items():
            got = row[column]
            if isinstance(value, float) and math.isnan(value):
                assert pd.isna(got), f"second {t} column {column}: {got!r} instead of NA"
            else:
                expected_value = pytest.approx(value, rel=1e-9, abs=1e-9)
                assert float(got) == expected_value, f"second {t} column {column}: {got!r} != {value!r}"
