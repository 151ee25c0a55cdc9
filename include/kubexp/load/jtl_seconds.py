"""Per-block partial aggregates keyed by absolute second, merged once into per-second rows.

Rows may come in any order (batches from several servers, slow requests written late), so nothing is
final until the end. Elapsed times are whole milliseconds: exact percentiles come from per-second
counts of each distinct value (usually a few hundred per second), not from the samples themselves;
the counts are kept apart for successful samples, so the same counts give the statistics of all
samples and of successful ones, per second and over the whole file. The rows stay numpy columns
(`Seconds`): pandas is imported only by whoever asks for a DataFrame, not by `kubexp jtl aggregate`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pyarrow as pa

from kubexp.load.jtl_reader import INTEGER_COLUMNS, JtlError, booleans, filled, integers
from kubexp.records import EXPERIMENT_LOAD_COLUMNS, LOAD_SECOND_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

PERCENTILES = (50, 90, 95, 99)
MAX_SPAN_S = 7 * 86400  # a longer span means broken timestamps, not a load test
ENGINE_PREFIX = re.compile(r"^(\S+:\d+)-")  # distributed mode: "host:port-<thread group> 1-7"
_LOW32 = np.int64(0xFFFFFFFF)
T = TypeVar("T", int, np.ndarray)


@dataclass(frozen=True)
class Seconds:
    """Per-second rows (LOAD_SECOND_COLUMNS) as numpy columns: int64, float64 (NaN: no such sample), and
    int64 with a mask in `unknown` (bytes and threads: True where the second has no value)."""

    columns: dict[str, np.ndarray]
    unknown: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["t"])

    def frame(self) -> pd.DataFrame:
        """As a DataFrame; the masked columns are pandas' Int64."""
        import pandas as pd

        return pd.DataFrame({name: pd.arrays.IntegerArray(values, self.unknown[name]) if name in self.unknown
                             else values for name, values in self.columns.items()})

    def csv(self, names: dict[str, str]) -> str:
        """The CSV text `frame().rename(columns=names).to_csv(index=False, lineterminator="\\n")` writes: numbers
        as numpy prints them, nothing for NaN or unknown."""
        fields = []
        for name, values in self.columns.items():
            text = values.astype(str)
            text[self.unknown[name] if name in self.unknown else np.isnan(values)] = ""
            fields.append(text.tolist())
        lines = [",".join(names.get(name, name) for name in self.columns), *map(",".join, zip(*fields, strict=True))]
        return "\n".join(lines) + "\n"

    def table(self) -> pa.Table:
        """As Arrow (the Parquet file aggregate_and_keep keeps): bytes and threads null where unknown."""
        return pa.table({name: pa.array(values, mask=self.unknown.get(name)) for name, values in self.columns.items()})

    @classmethod
    def from_table(cls, table: pa.Table) -> Seconds:
        """What `table()` wrote (or pyarrow's Table.from_pandas of `frame()`): nulls of bytes and threads are
        unknown, nulls elsewhere NaN."""
        columns, unknown = {}, {}
        for name in table.column_names:
            column = table[name]
            if name in ("bytes", "threads"):
                unknown[name] = column.is_null().to_numpy()
                column = column.fill_null(0)
            columns[name] = column.to_numpy()
        return cls(columns, unknown)


def dictionary_codes(column: pa.Array, classify: dict[str, int], rule: Callable[[str], int]) -> np.ndarray:
    """Per-row code of a dictionary column, classifying each distinct value once (`rule(value) -> int`)."""
    values = column.dictionary.to_pylist()
    lookup = np.array([classify[value] if value in classify else classify.setdefault(value, rule(value))
                       for value in values] or [0], dtype=np.int64)
    indices = filled(column.indices, 0)
    return lookup[indices]


def response_class(code: str) -> int:
    """4 for 4xx, 5 for 5xx, 0 for anything else (2xx/3xx, and non-HTTP errors like timeouts)."""
    text = (code or "").strip()
    if len(text) == 3 and text.isdigit() and text[0] in "45":
        return int(text[0])
    return 0


def _engine_of(thread_name: str) -> str:
    match = ENGINE_PREFIX.match(thread_name)
    return match.group(1) if match else ""


class Classifier:
    """Response-code classes and engine numbers, shared by the accumulators of one file's parts."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}  # responseCode -> class (response_class)
        self.thread_engine: dict[str, int] = {}  # threadName -> engine number
        self._engines: dict[str, int] = {}  # engine ("host:port" prefix, "" locally) -> number
        self._lock = threading.Lock()

    def engine_number(self, thread_name: str) -> int:
        with self._lock:  # parts run in threads: one engine must get one number
            return self._engines.setdefault(_engine_of(thread_name), len(self._engines))


class Accumulator:
    """Per-block partial aggregates keyed by absolute second, merged once at the end."""

    def __init__(self, t0_ms: int | None, classifier: Classifier) -> None:
        self.t0_ms = t0_ms
        self.rows = 0
        self.bad_values = 0
        self.min_ts: int | None = None
        self.max_end: int | None = None  # latest timeStamp + elapsed (a sample's end)
        self.columns: set[str] = set()
        self.sums: list[tuple[np.ndarray, np.ndarray]] = []  # seconds, (k, 8) sums (see SUM_FIELDS)
        self.hists: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # second, success, elapsed, count
        self.threads: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # second, engine, max allThreads
        self.classifier = classifier

    SUM_FIELDS = ("requests", "successes", "failures_4xx", "failures_5xx", "latency", "connect", "bytes",
                  "success_processing")  # the last: Latency - Connect summed over successful samples

    def absorb(self, other: Accumulator) -> None:
        """Take over another part's partial results (same t0)."""
        self.rows += other.rows
        self.bad_values += other.bad_values
        if other.min_ts is not None:
            self.min_ts = other.min_ts if self.min_ts is None else min(self.min_ts, other.min_ts)
        if other.max_end is not None:
            self.max_end = other.max_end if self.max_end is None else max(self.max_end, other.max_end)
        self.columns |= other.columns
        self.sums += other.sums
        self.hists += other.hists
        self.threads += other.threads

    def add(self, batch: pa.RecordBatch) -> None:
        cols = dict(zip(batch.schema.names, batch.columns, strict=True))
        self.columns.update(cols)
        parsed = {name: integers(cols[name]) for name in INTEGER_COLUMNS if name in cols}
        success, success_ok = booleans(cols["success"])
        valid = parsed["elapsed"][0] >= 0
        for ok in (success_ok, *(ok for _values, ok in parsed.values())):
            if ok is not None:
                valid &= ok
        bad = int(len(valid) - np.count_nonzero(valid))
        keep: np.ndarray | slice = slice(None)
        if bad:
            self.bad_values += bad
            keep = np.flatnonzero(valid)
        values = {name: array[keep] for name, (array, _ok) in parsed.items()}
        success = success[keep]
        if len(success) == 0:
            return
        self.rows += len(success)
        ts = values["timeStamp"]
        batch_min = int(ts.min())
        self.min_ts = batch_min if self.min_ts is None else min(self.min_ts, batch_min)
        batch_end = int((ts + values["elapsed"]).max())
        self.max_end = batch_end if self.max_end is None else max(self.max_end, batch_end)
        if self.t0_ms is None:
            self.t0_ms = batch_min  # provisional; aggregate() re-runs if an earlier sample turns up later
        second = np.floor_divide(ts - self.t0_ms, 1000)
        first = int(second.min())
        size = int(second.max()) - first + 1
        if size > MAX_SPAN_S:
            raise JtlError(f"timestamps within one block span {size} s; the file's timeStamp column is broken")
        rel = second - first
        self._add_sums(rel, size, first, success, values, cols, keep)
        elapsed = np.minimum(values["elapsed"], _LOW32)
        keys, counts = np.unique((rel << 33) | (success.astype(np.int64) << 32) | elapsed, return_counts=True)
        self.hists.append((first + (keys >> 33), (keys >> 32) & 1, keys & _LOW32, counts))
        if "allThreads" in values:
            self._add_threads(rel, size, first, values["allThreads"], cols.get("threadName"), keep)

    def _add_sums(self, rel: np.ndarray, size: int, first: int, success: np.ndarray,
                  values: dict[str, np.ndarray], cols: dict[str, pa.Array], keep: np.ndarray | slice) -> None:
        requests = np.bincount(rel, minlength=size)
        occupied = np.flatnonzero(requests)
        sums = np.zeros((len(occupied), len(self.SUM_FIELDS)), dtype=np.int64)
        sums[:, 0] = requests[occupied]
        sums[:, 1] = np.bincount(rel, weights=success, minlength=size)[occupied]
        failed = np.flatnonzero(~success)
        if len(failed) and "responseCode" in cols:
            classes = dictionary_codes(cols["responseCode"], self.classifier.codes,
                                       response_class)[_row_numbers(keep, failed)]
            for column, code in ((2, 4), (3, 5)):
                sums[:, column] = np.bincount(rel[failed[classes == code]], minlength=size)[occupied]
        for column, name in ((4, "Latency"), (5, "Connect"), (6, "bytes")):
            if name in values:
                sums[:, column] = np.bincount(rel, weights=values[name], minlength=size)[occupied]
        if "Latency" in values and "Connect" in values:
            processing = np.where(success, values["Latency"] - values["Connect"], 0)
            sums[:, 7] = np.bincount(rel, weights=processing, minlength=size)[occupied]
        self.sums.append((first + occupied, sums))

    def _add_threads(self, rel: np.ndarray, size: int, first: int, threads: np.ndarray,
                     names: pa.Array | None, keep: np.ndarray | slice) -> None:
        if names is None:
            engine = np.zeros(len(rel), dtype=np.int64)
        else:
            engine = dictionary_codes(names, self.classifier.thread_engine, self.classifier.engine_number)[keep]
        width = int(engine.max()) + 1
        peak = np.full(size * width, -1, dtype=np.int64)
        np.maximum.at(peak, rel * width + engine, threads)
        cells = np.flatnonzero(peak >= 0)
        self.threads.append((first + cells // width, cells % width, peak[cells]))


def _row_numbers(keep: np.ndarray | slice, rows: np.ndarray) -> np.ndarray:
    """Positions in the original batch of `rows` (positions among the kept rows)."""
    return rows if isinstance(keep, slice) else keep[rows]


def _segments(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    return np.concatenate(([0], np.flatnonzero(np.diff(sorted_keys)) + 1))


def merge(acc: Accumulator) -> tuple[Seconds, dict[str, float | None]]:
    """The per-second rows (LOAD_SECOND_COLUMNS) and the exact statistics over every sample
    (EXPERIMENT_LOAD_COLUMNS)."""
    seconds_all = np.concatenate([seconds for seconds, _ in acc.sums])
    seconds, where = np.unique(seconds_all, return_inverse=True)
    sums = np.zeros((len(seconds), len(acc.SUM_FIELDS)), dtype=np.int64)
    np.add.at(sums, where, np.concatenate([part for _, part in acc.sums]))
    first, last = int(seconds[0]), int(seconds[-1])
    if last - first >= MAX_SPAN_S:
        raise JtlError(f"samples span {last - first} s (from t={first} to t={last}); the timeStamp column or "
                       f"the t0 given is wrong")
    t = np.arange(first, last + 1)
    at = seconds - first
    columns = {"t": t}
    for index, name in enumerate(("requests", "successes", "failures_4xx", "failures_5xx")):
        column = np.zeros(len(t), dtype=np.int64)
        column[at] = sums[:, index]
        columns[name] = column
    columns["failures"] = columns["requests"] - columns["successes"]
    columns["failures_other"] = columns["failures"] - columns["failures_4xx"] - columns["failures_5xx"]
    whole = _elapsed_statistics(acc, columns, first, len(t))
    requests, successes = sums[:, 0].astype(float), sums[:, 1].astype(float)
    processing = {"Latency", "Connect"} <= acc.columns
    for index, name, present, divisor in ((4, "latency_mean_ms", "Latency" in acc.columns, requests),
                                          (5, "connect_mean_ms", "Connect" in acc.columns, requests),
                                          (7, "success_processing_mean_ms", processing, successes)):
        column = np.full(len(t), np.nan)
        if present:
            with np.errstate(invalid="ignore", divide="ignore"):
                column[at] = np.where(divisor > 0, sums[:, index] / np.maximum(divisor, 1), np.nan)
        columns[name] = column
    total_successes = int(sums[:, 1].sum())
    whole.update(requests=int(sums[:, 0].sum()), successes=total_successes)
    whole["success_processing_mean_ms"] = float(sums[:, 7].sum()) / total_successes \
        if processing and total_successes else None
    columns["bytes"] = np.zeros(len(t), dtype=np.int64)
    unknown = {"bytes": np.full(len(t), "bytes" not in acc.columns)}
    if "bytes" in acc.columns:
        columns["bytes"][at] = sums[:, 6]
    columns["threads"], unknown["threads"] = _threads(acc, first, len(t)) if acc.threads else \
        (np.zeros(len(t), dtype=np.int64), np.full(len(t), True))
    return Seconds({name: columns[name] for name in LOAD_SECOND_COLUMNS}, unknown), \
        {name: whole[name] for name in EXPERIMENT_LOAD_COLUMNS}


def _elapsed_statistics(acc: Accumulator, columns: dict[str, np.ndarray], first: int,
                        size: int) -> dict[str, float | None]:
    """Per second, elapsed mean, exact nearest-rank percentiles and max of all samples and of successful ones
    (into `columns`, `size` seconds from `first`); returns the same over the whole file."""
    second = np.concatenate([part[0] for part in acc.hists]) - first
    success = np.concatenate([part[1] for part in acc.hists]).astype(bool)
    elapsed = np.concatenate([part[2] for part in acc.hists])
    counts = np.concatenate([part[3] for part in acc.hists])
    whole: dict[str, float | None] = {}
    for prefix, picked in (("", slice(None)), ("success_", success)):
        distribution, overall = _distribution(second[picked], elapsed[picked], counts[picked], size)
        for name, column in distribution.items():
            columns[prefix + name] = column
        whole.update({prefix + name: value for name, value in overall.items()})
    return whole


def _nearest_rank(p: int, n: T) -> T:
    """Rank of the p-th percentile among n values: the smallest with at least p % of them at or below it."""
    return (p * n + 99) // 100


def _distribution(second: np.ndarray, elapsed: np.ndarray, counts: np.ndarray,
                  size: int) -> tuple[dict[str, np.ndarray], dict[str, float | None]]:
    """Mean, exact nearest-rank percentiles and max of elapsed per second (columns of `size` seconds, NaN
    without samples) and over all seconds, from counts of (second, elapsed value) pairs (repeats allowed)."""
    names = ["elapsed_mean_ms", *(f"elapsed_p{p}_ms" for p in PERCENTILES), "elapsed_max_ms"]
    if len(counts) == 0:
        return {name: np.full(size, np.nan) for name in names}, {name: None for name in names}
    keys = (second << 32) | elapsed
    order = np.argsort(keys)
    keys = keys[order]
    starts = _segments(keys)
    counts = np.add.reduceat(counts[order], starts)
    keys = keys[starts]
    value = keys & _LOW32
    rel_second = keys >> 32
    seg = _segments(rel_second)
    n = np.add.reduceat(counts, seg)
    cumulative = np.cumsum(counts)
    before = cumulative[seg] - counts[seg]
    at = rel_second[seg]

    def per_second(values: np.ndarray) -> np.ndarray:
        column = np.full(size, np.nan)
        column[at] = values
        return column

    columns = {"elapsed_mean_ms": per_second(np.add.reduceat(value * counts, seg) / n)}
    for p in PERCENTILES:
        rank = _nearest_rank(p, n)
        columns[f"elapsed_p{p}_ms"] = per_second(value[np.searchsorted(cumulative, before + rank)].astype(float))
    ends = np.concatenate((seg[1:], [len(value)])) - 1
    columns["elapsed_max_ms"] = per_second(value[ends].astype(float))
    # The whole file: the same counts ordered by value alone.
    by_value = np.argsort(value, kind="stable")
    ordered, running = value[by_value], np.cumsum(counts[by_value])
    total = int(running[-1])
    overall: dict[str, float | None] = {"elapsed_mean_ms": float((value * counts).sum()) / total}
    for p in PERCENTILES:
        overall[f"elapsed_p{p}_ms"] = float(ordered[np.searchsorted(running, _nearest_rank(p, total))])
    overall["elapsed_max_ms"] = float(ordered[-1])
    return columns, overall


def _threads(acc: Accumulator, first: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per second: the sum over engines of each engine's highest allThreads (one engine per JMeter server), and
    where no sample gave one."""
    second = np.concatenate([part[0] for part in acc.threads]) - first
    engine = np.concatenate([part[1] for part in acc.threads])
    peak = np.concatenate([part[2] for part in acc.threads])
    width = int(engine.max()) + 1
    keys = second * width + engine
    order = np.argsort(keys)
    keys = keys[order]
    starts = _segments(keys)
    peaks = np.maximum.reduceat(peak[order], starts)
    total = np.bincount(keys[starts] // width, weights=peaks, minlength=size).astype(np.int64)
    unseen = np.bincount(keys[starts] // width, minlength=size) == 0
    return total, unseen
