"""`summary.json` beside report.html: the report's numbers in a small machine-readable file (no raw data).

What it holds: the suite, how many experiments finished; per scenario the repetition verdict, the per-second
successful responses (the paper's Figure 8 samples: count, mean, quartiles), platform event kinds and the collected
metric series (steady-state mean and median); per varying parameter the Table 1-style rows (medians with intervals,
Kruskal-Wallis p-values per experiment and per second, Cliff's delta).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kubexp.analysis.dataset import SuiteData
from kubexp.analysis.stats import MedianInterval


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars unwrapped, NaN as null, intervals as {median, low, high, coverage}."""
    if isinstance(value, MedianInterval):
        return {"median": _plain(value.median), "low": _plain(value.low), "high": _plain(value.high),
                "n": value.n, "coverage": _plain(value.coverage)}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _records(frame: pd.DataFrame, drop: Sequence[str] = ()) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in row.items() if key not in drop}
            for row in frame.to_dict(orient="records")]


def seconds_by_scenario(data: SuiteData) -> list[dict[str, Any]]:
    """Per scenario, the steady-state per-second successful responses of all its finished experiments."""
    if data.steady.empty:
        return []
    rows = []
    # A suite that varies nothing is one scenario: pandas refuses a group-by without keys.
    groups = data.steady.groupby(list(data.parameters), observed=True, sort=True) if data.parameters \
        else [((), data.steady)]
    for key, group in groups:
        values = group["successes"].to_numpy(dtype=float)
        quartiles = np.percentile(values, [25, 50, 75])
        rows.append({**{p: _plain(v) for p, v in zip(data.parameters, key, strict=True)},
                     "experiments": int(group["experiment_id"].nunique()), "seconds": int(values.size),
                     "mean": float(values.mean()), "q1": float(quartiles[0]), "median": float(quartiles[1]),
                     "q3": float(quartiles[2]), "zero_seconds": int((values == 0).sum())})
    return rows


def events_by_scenario(data: SuiteData) -> list[dict[str, Any]]:
    if data.events.empty:
        return []
    counts = data.events.groupby([*data.parameters, "kind"], observed=True).size().rename("count").reset_index()
    return _records(counts)


def series_by_scenario(data: SuiteData, points: pd.DataFrame) -> list[dict[str, Any]]:
    """Per scenario and metric name: mean and median of the steady-state seconds of every series of that name
    (pooled over its series, e.g. per pod for pod_cpu_cores; not summed)."""
    if points.empty or data.windows.empty:
        return []
    windows = data.windows.set_index("experiment_id")
    pooled: dict[tuple[Any, ...], list[np.ndarray]] = {}
    for row in points.itertuples(index=False):
        experiment = str(row.experiment_id)
        if experiment not in windows.index:
            continue
        start, end = windows.at[experiment, "window_start_s"], windows.at[experiment, "window_end_s"]
        t, value = np.asarray(row.t), np.asarray(row.value, dtype=float)
        key = (*(getattr(row, p) for p in data.parameters), str(row.name))
        pooled.setdefault(key, []).append(value[(t >= start) & (t <= end)])
    rows = []
    for key, parts in sorted(pooled.items(), key=lambda item: tuple(str(k) for k in item[0])):
        values = np.concatenate(parts)
        if values.size:
            rows.append({**{p: _plain(v) for p, v in zip(data.parameters, key[:-1], strict=True)}, "name": key[-1],
                         "seconds": int(values.size), "mean": float(values.mean()),
                         "median": float(np.median(values))})
    return rows


def build_summary(data: SuiteData, tables: dict[str, pd.DataFrame], repetitions: pd.DataFrame,
                  generated: str, points: pd.DataFrame | None = None) -> dict[str, Any]:
    return {
        "suite": data.suite["name"], "generated": generated,
        "finished_experiments": len(data.per_experiment), "parameters": list(data.parameters),
        "repetitions": _records(repetitions),
        "seconds": seconds_by_scenario(data),
        "events": events_by_scenario(data),
        "series": series_by_scenario(data, points if points is not None else pd.DataFrame()),
        "comparisons": {factor: _records(table, drop=("pairs",)) for factor, table in tables.items()},
    }
