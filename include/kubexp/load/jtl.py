"""JMeter CSV results (JTL) -> one row per second of load, streamed.

A sample belongs to second `t = floor((timeStamp - t0_ms) / 1000)`, with timeStamp as JMeter wrote it
(the sample's start, `sampleresult.timestamp.start=true`). A large file is cut into
record-aligned byte ranges parsed in parallel (one per core); each is read in blocks
(`kubexp.load.jtl_reader`) and reduced per block (`kubexp.load.jtl_seconds`), so memory stays bounded
whatever the file size, and rows may come in any order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from kubexp.load.jtl_reader import (
    JMETER_DEFAULT_COLUMNS,
    JtlError,
    Layout,
    batches,
    first_timestamp,
    layout_of,
    record_ranges,
)
from kubexp.load.jtl_seconds import Accumulator, Classifier, Seconds, merge, response_class
from kubexp.records import EXPERIMENT_LOAD_COLUMNS, LOAD_SECOND_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["JMETER_DEFAULT_COLUMNS", "MAX_MALFORMED_SHARE", "JtlError", "JtlResult", "aggregate", "aggregate_and_keep",
           "kept_path", "response_class", "too_many_malformed"]

MAX_MALFORMED_SHARE = 0.01  # default; a suite sets load.max_malformed_share


@dataclass(frozen=True)
class JtlResult:
    seconds: Seconds  # LOAD_SECOND_COLUMNS, one row per second from the first to the last sample's second
    rows: int  # samples aggregated
    malformed: int  # lines skipped: wrong field count, unparsable or empty values, a truncated last line
    t0_ms: int | None  # the t0 used (None only for a file without samples and no t0 given)
    last_end_ms: int | None = None  # the latest sample's end (timeStamp + elapsed); None without samples
    # EXPERIMENT_LOAD_COLUMNS: exact statistics over every sample (percentiles nearest rank over all samples,
    # resp. all successful ones; None where there is no such sample)
    whole: dict[str, float | None] = field(default_factory=dict)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """`seconds` as a DataFrame (bytes and threads: pandas' Int64, except in the empty frame)."""
        return self.seconds.frame()


WANTED = ("timeStamp", "elapsed", "success", "responseCode", "bytes", "allThreads", "Latency", "Connect", "threadName")
PARALLEL_MIN_BYTES = 32 << 20  # below this, one reader is as fast


def too_many_malformed(malformed: int, total: int, max_share: float) -> bool:
    """More malformed lines of `total` than `max_share` allows; one (a cut-off last line) is always tolerated."""
    return malformed > 1 and malformed > max_share * total


class _Part(Protocol):
    invalid: list[int]  # lines pyarrow skipped (wrong field count)

    def add(self, batch: pa.RecordBatch) -> None:
        ...


P = TypeVar("P", bound=_Part)


def default_parts() -> int:
    """Parallel readers: one per usable core, at most 2 (each holds ~200 MB of pyarrow read-ahead)."""
    return max(1, min(2, len(os.sched_getaffinity(0))))


def _scan(path: Path, layout: Layout, wanted: Sequence[str], make: Callable[[], P], *, block_size: int,
                    parts: int) -> list[P]:
    """Feed each part of the file (record-aligned byte ranges, parsed in parallel) to its own consumer.

    First pass with typed columns; if a value does not parse, everything is read again as text and
    validated row by row (see jtl_reader).
    """
    if layout.data_end - layout.data_start < PARALLEL_MIN_BYTES:
        parts = 1
    ranges = record_ranges(path, layout, parts)
    if not ranges:
        return [make()]
    for tolerant in (False, True):
        consumers = [make() for _ in ranges]

        def feed(byte_range: tuple[int, int], consumer: P, tolerant: bool = tolerant) -> None:
            for batch in batches(path, layout, wanted, byte_range, tolerant=tolerant, block_size=block_size,
                                 invalid=consumer.invalid):
                consumer.add(batch)

        try:
            if len(ranges) == 1:
                feed(ranges[0], consumers[0])
            else:
                with ThreadPoolExecutor(len(ranges), thread_name_prefix="jtl-part") as pool:
                    for done in [pool.submit(feed, r, c) for r, c in zip(ranges, consumers, strict=True)]:
                        done.result()
        except pa.ArrowInvalid as exc:
            if tolerant or "conversion error" not in str(exc):
                raise JtlError(f"{path}: {exc}") from exc
            continue
        return consumers
    raise AssertionError("unreachable")


class _SecondsPart(Accumulator):
    def __init__(self, t0_ms: int | None, classifier: Classifier) -> None:
        super().__init__(t0_ms, classifier)
        self.invalid = [0]


def _read(path: Path, layout: Layout, t0_ms: int | None, block_size: int, parts: int) -> tuple[Accumulator, int]:
    """All parts' partial aggregates in one accumulator, and the count of lines pyarrow skipped."""
    if t0_ms is None:  # parts must share t0: a provisional one from the first records (checked by the caller)
        t0_ms = first_timestamp(path, layout)
        parts = parts if t0_ms is not None else 1
    classifier = Classifier()
    done = _scan(path, layout, WANTED, lambda: _SecondsPart(t0_ms, classifier), block_size=block_size, parts=parts)
    for other in done[1:]:
        done[0].absorb(other)
    return done[0], sum(part.invalid[0] for part in done)


def aggregate(path: Path | str, t0_ms: int | None = None, *, max_malformed_share: float = MAX_MALFORMED_SHARE,
              columns: Sequence[str] | None = None, block_size: int = 4 << 20, parts: int | None = None) -> JtlResult:
    """Per-second load rows of a JMeter CSV result file.

    t0_ms: the experiment's load start (epoch ms); None takes the smallest timeStamp in the file.
    max_malformed_share: above this share of malformed lines the file is refused (JtlError); a single malformed
        line (typically the last one, cut off when JMeter was stopped) never is.
    columns: field names in file order, for a file without a header row that is not JMeter's default.
    parts: parallel readers for a large file (default: one per core, at most 2).
    """
    path = Path(path)
    kept = _kept(path, t0_ms, columns)
    if kept is not None:
        _check_malformed(path, kept.malformed, kept.rows + kept.malformed, max_malformed_share)
        return kept
    layout = layout_of(path, columns)
    parts = parts or default_parts()
    acc, invalid_lines = _read(path, layout, t0_ms, block_size, parts)
    if t0_ms is None and acc.min_ts is not None and acc.t0_ms is not None and acc.min_ts < acc.t0_ms:
        acc, invalid_lines = _read(path, layout, acc.min_ts, block_size, parts)  # an earlier sample came late
    malformed = invalid_lines + acc.bad_values + int(layout.truncated_tail)
    _check_malformed(path, malformed, acc.rows + malformed, max_malformed_share)
    if acc.rows == 0:
        empty = Seconds({name: np.empty(0) for name in LOAD_SECOND_COLUMNS}, {})
        whole: dict[str, float | None] = {name: None for name in EXPERIMENT_LOAD_COLUMNS}
        return JtlResult(empty, 0, malformed, acc.t0_ms, whole={**whole, "requests": 0, "successes": 0})
    seconds, whole = merge(acc)
    return JtlResult(seconds, acc.rows, malformed, acc.t0_ms, acc.max_end, whole)


def _check_malformed(path: Path, malformed: int, total: int, max_malformed_share: float) -> None:
    if too_many_malformed(malformed, total, max_malformed_share):
        raise JtlError(f"{path}: {malformed} of {total} lines are malformed ({malformed / total:.1%}), more than "
                       f"the allowed {max_malformed_share:.1%}; check the file or raise the limit "
                       f"(suite: load.max_malformed_share; kubexp jtl aggregate --max-malformed-share)")


def loaded_seconds(frame: pd.DataFrame, duration_s: int) -> int:
    """Seconds of [0, duration_s) with a request started or still running in them.

    From per-second rows: second u counts if a request started in it, or if a second t < u started
    one that took longer than u - t seconds (its slowest request started at t or later, so it was
    still running at u). A slow SUT keeps every second; a load that stalled or broke off does not."""
    if frame.empty:
        return 0
    started = frame[frame["requests"] > 0]
    ends = started["t"].to_numpy(dtype=float) + np.nan_to_num(started["elapsed_max_ms"].to_numpy(dtype=float)) / 1000
    covered = np.zeros(duration_s, dtype=bool)
    for t, end in zip(started["t"].to_numpy(dtype=int), ends, strict=True):
        low, high = max(t, 0), min(max(t + 1, int(np.ceil(end))), duration_s)  # seconds t .. ceil(end) - 1
        covered[low:max(low, high)] = True
    return int(covered.sum())


def kept_path(path: Path) -> Path:
    """Where aggregate_and_keep puts a JTL's per-second rows: beside it."""
    return path.with_name(path.name + ".seconds.parquet")


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def aggregate_and_keep(path: Path | str) -> JtlResult:
    """aggregate() from the smallest timeStamp, never refusing malformed lines, and the result kept beside the
    JTL: the load step learns t0 and the end from it, and collect's aggregate() of the same, unchanged file
    from that t0 reads it back instead of parsing the file a second time (it still applies its own
    max_malformed_share)."""
    import pyarrow.parquet as pq

    path = Path(path)
    result = aggregate(path, max_malformed_share=1.0)
    if result.rows:
        metadata = {"stamp": _stamp(path), "t0_ms": result.t0_ms, "rows": result.rows,
                    "malformed": result.malformed, "last_end_ms": result.last_end_ms, "whole": result.whole}
        table = result.seconds.table().replace_schema_metadata({b"kubexp": json.dumps(metadata).encode()})
        partial = kept_path(path).with_suffix(".partial")
        pq.write_table(table, partial)
        partial.replace(kept_path(path))
    return result


def _kept(path: Path, t0_ms: int | None, columns: Sequence[str] | None) -> JtlResult | None:
    """The result aggregate_and_keep kept for this file as it is now and this t0, if any."""
    kept = kept_path(path)
    if t0_ms is None or columns is not None or not kept.exists():
        return None
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(kept)
        metadata = json.loads((table.schema.metadata or {})[b"kubexp"])
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None
    if metadata["stamp"] != _stamp(path) or metadata["t0_ms"] != t0_ms or "whole" not in metadata:
        return None
    return JtlResult(Seconds.from_table(table), metadata["rows"], metadata["malformed"], t0_ms,
                     metadata["last_end_ms"], metadata["whole"])
