"""Steady-state windows: which seconds of an experiment count, and per-experiment summaries of them.

Every experiment starts with a warm-up (connections opening, caches filling, autoscaling
reacting) and may end with a cool-down (the last, partial second; threads stopping).
A suite can fix both in seconds (`analysis: {warmup_s, cooldown_s}`); whatever it leaves
unset is detected per experiment with MSER-5 (White 1997; White, Cobb & Spratt 2000):
the truncation point that minimises the marginal standard error of the mean of
5-second batch means, searched over the first quarter of the batches
(WARMUP_SEARCH_FRACTION). The cool-down is detected the same way on the reversed
remainder, searched over its last tenth only (COOLDOWN_SEARCH_FRACTION), because the load
stops abruptly and any real cool-down transient is short. Both searches are bounded so that
a failure episode in mid-run, the behaviour under study, is not cut away as a transient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BATCH_S = 5
WARMUP_SEARCH_FRACTION = 0.25
COOLDOWN_SEARCH_FRACTION = 0.1
COUNT_COLUMNS = ("requests", "successes", "failures", "failures_4xx", "failures_5xx", "failures_other")


def mser_truncation(values: np.ndarray, *, batch: int = BATCH_S, max_fraction: float = WARMUP_SEARCH_FRACTION) -> int:
    """Number of leading observations MSER-`batch` drops (a multiple of `batch`; 0 for short series)."""
    series = np.asarray(values, dtype=float)
    batches = series.size // batch
    if batches < 4:
        return 0
    means = series[: batches * batch].reshape(batches, batch).mean(axis=1)
    # Sums over the batches d..m-1 for every candidate truncation d, from the end.
    tail_sum = np.cumsum(means[::-1])[::-1]
    tail_sq = np.cumsum((means**2)[::-1])[::-1]
    kept = np.arange(batches, 0, -1, dtype=float)
    squared_deviations = np.maximum(tail_sq - tail_sum**2 / kept, 0.0)
    mser = squared_deviations / kept**2
    candidates = int(batches * max_fraction) + 1
    return int(np.argmin(mser[:candidates])) * batch


@dataclass(frozen=True)
class SteadyWindow:
    """Seconds start_s <= t < end_s of one experiment (the store's experiment_aggregate uses the same bounds)."""

    start_s: int
    end_s: int
    warmup_method: str  # "mser-5" or "configured"
    cooldown_method: str

    @property
    def seconds(self) -> int:
        return self.end_s - self.start_s


def steady_window(t: np.ndarray, values: np.ndarray, *, warmup_s: int | None = None,
                  cooldown_s: int | None = None, duration_s: int | None = None) -> SteadyWindow:
    """The window of one experiment from its seconds `t` and the series MSER looks at (successes/s).

    With `duration_s` the experiment spans 0 <= t < duration_s, as the store's summaries
    assume (seconds after the load's end are dropped; missing ones count as zero); without it,
    it spans its first to its last recorded second.
    """
    times, series = np.asarray(t, dtype=int), np.asarray(values, dtype=float)
    first = 0 if duration_s is not None else int(times.min())
    horizon = int(duration_s) if duration_s is not None else int(times.max()) + 1
    grid = np.zeros(max(horizon - first, 0))
    inside = (times >= first) & (times < horizon)
    grid[times[inside] - first] = series[inside]  # seconds without a row completed nothing
    if warmup_s is None:
        start = first + mser_truncation(grid)
    else:
        start = max(first, int(warmup_s))
    if cooldown_s is None:
        remainder = grid[max(start - first, 0):]
        end = horizon - mser_truncation(remainder[::-1], max_fraction=COOLDOWN_SEARCH_FRACTION)
    else:
        end = horizon - int(cooldown_s)
    # Configured trims longer than the experiment leave an empty window (end_s = start_s).
    return SteadyWindow(start, max(end, start), "mser-5" if warmup_s is None else "configured",
                        "mser-5" if cooldown_s is None else "configured")


WINDOW_COLUMNS = ["experiment_id", "window_start_s", "window_end_s", "seconds", "warmup_method", "cooldown_method"]


def steady_windows(seconds: pd.DataFrame, *, warmup_s: int | None = None, cooldown_s: int | None = None,
                   durations: pd.Series | None = None, column: str = "successes") -> pd.DataFrame:
    """One window per experiment (WINDOW_COLUMNS); `durations` maps experiment_id to duration_s."""
    codes, experiment_ids = pd.factorize(seconds["experiment_id"])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(experiment_ids) + 1))
    times = seconds["t"].to_numpy()[order]
    values = seconds[column].to_numpy(dtype=float)[order]
    rows = []
    for i, experiment_id in enumerate(map(str, experiment_ids)):
        part = slice(bounds[i], bounds[i + 1])
        duration = None if durations is None else int(durations[experiment_id])
        window = steady_window(times[part], values[part], warmup_s=warmup_s, cooldown_s=cooldown_s,
                               duration_s=duration)
        rows.append((experiment_id, window.start_s, window.end_s, window.seconds,
                     window.warmup_method, window.cooldown_method))
    return pd.DataFrame(rows, columns=WINDOW_COLUMNS).astype(
        {"window_start_s": np.int64, "window_end_s": np.int64, "seconds": np.int64})


def trim(seconds: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """The per-second rows inside each window, with missing seconds filled in as zero counts.

    A second without a row is a second in which no request completed: an outage, which
    must count as 0 successful responses rather than vanish from the distribution. Column
    `recorded` tells which seconds had a row; experiment_id comes back categorical.
    """
    present, distinct = pd.factorize(seconds["experiment_id"])
    distinct_ids = [str(e) for e in distinct]
    usable = windows[(windows["seconds"] > 0) & windows["experiment_id"].astype(str).isin(distinct_ids)]
    experiment_ids = usable["experiment_id"].astype(str).tolist()
    lengths = usable["seconds"].to_numpy(dtype=np.int64)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid_codes = np.repeat(np.arange(len(usable)), lengths)
    grid_t = np.repeat(usable["window_start_s"].to_numpy(dtype=np.int64), lengths) + offsets
    # Look every grid second up among the rows by one integer key (experiment code, t).
    row_codes = pd.Index(experiment_ids).get_indexer(distinct_ids)[present]  # -1: no window
    row_t = seconds["t"].to_numpy()
    inside = np.flatnonzero(row_codes >= 0)
    low = min(int(grid_t.min(initial=0)), int(row_t.min(initial=0)))
    span = max(int(grid_t.max(initial=0)), int(row_t.max(initial=0))) - low + 1
    row_keys = row_codes[inside].astype(np.int64) * span + (row_t[inside] - low)
    by_key = np.argsort(row_keys)
    sorted_keys = row_keys[by_key]
    grid_keys = grid_codes.astype(np.int64) * span + (grid_t - low)
    # Every usable window has rows, so sorted_keys is empty only when the grid is.
    position = np.minimum(np.searchsorted(sorted_keys, grid_keys), max(len(sorted_keys) - 1, 0))
    found = sorted_keys[position] == grid_keys
    source = inside[by_key][position]
    kept = pd.DataFrame({"experiment_id": pd.Categorical.from_codes(grid_codes, categories=experiment_ids),
                         "t": grid_t})
    for column in seconds.columns.drop(["experiment_id", "t"]):
        values = seconds[column].iloc[source].reset_index(drop=True)
        kept[column] = values.where(found, 0) if column in COUNT_COLUMNS else values.where(found)
    kept["recorded"] = found
    return kept


def summarize(steady: pd.DataFrame) -> pd.DataFrame:
    """Per-experiment figures over its steady window (one row per experiment_id).

    successes_median is the value the statistics use as the experiment's outcome;
    elapsed_mean_ms is weighted by requests so quiet seconds do not dominate it, success_elapsed_mean_ms
    (successful requests only; NaN for experiments collected without it) by successes.
    """
    success_mean = steady["success_elapsed_mean_ms"] if "success_elapsed_mean_ms" in steady \
        else pd.Series(np.nan, index=steady.index)
    weighted = steady.assign(_elapsed_weight=steady["elapsed_mean_ms"] * steady["requests"],
                             _weight=steady["requests"].where(steady["elapsed_mean_ms"].notna(), 0),
                             _success_weight=success_mean * steady["successes"],
                             _successes=steady["successes"].where(success_mean.notna(), 0),
                             _zero=steady["successes"] == 0)
    grouped = weighted.groupby("experiment_id", sort=False, observed=True)
    summary = grouped.agg(
        seconds=("t", "size"),
        seconds_recorded=("recorded", "sum"),
        successes_median=("successes", "median"),
        successes_mean=("successes", "mean"),
        successes_std=("successes", "std"),
        failures_mean=("failures", "mean"),
        requests_mean=("requests", "mean"),
        elapsed_weight=("_elapsed_weight", "sum"),
        weight=("_weight", "sum"),
        success_weight=("_success_weight", "sum"),
        weighted_successes=("_successes", "sum"),
        zero_success_seconds=("_zero", "sum"),
    )
    summary["elapsed_mean_ms"] = summary["elapsed_weight"] / summary["weight"].where(summary["weight"] > 0)
    summary["success_elapsed_mean_ms"] = summary["success_weight"] / summary["weighted_successes"].where(
        summary["weighted_successes"] > 0)
    summary["failure_share"] = summary["failures_mean"] / summary["requests_mean"].where(summary["requests_mean"] > 0)
    summary = summary.drop(columns=["elapsed_weight", "weight", "success_weight", "weighted_successes"]).reset_index()
    summary["experiment_id"] = summary["experiment_id"].astype(str)
    return summary
