"""JMeter CSV results (JTL) -> one row per second of load, streamed.

A sample belongs to second `t = floor((timeStamp - t0_ms) / 1000)`, with timeStamp as JMeter wrote it
(the sample's start, `sampleresult.timestamp.start=true`). The file is read in blocks
(`kubexp.load.jtl_reader`) and reduced per block (`kubexp.load.jtl_seconds`), so memory stays bounded
whatever the file size, and rows may come in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kubexp.load.jtl_reader import (
    JMETER_DEFAULT_COLUMNS,
    REQUIRED_COLUMNS,
    JtlError,
    Layout,
    batches,
    booleans,
    integers,
    layout_of,
)
from kubexp.load.jtl_seconds import Accumulator, merge, response_class
from kubexp.records import LOAD_SECOND_COLUMNS

__all__ = ["JMETER_DEFAULT_COLUMNS", "JtlError", "JtlResult", "SampleSpan", "aggregate", "response_class",
           "sample_span"]


@dataclass(frozen=True)
class JtlResult:
    frame: pd.DataFrame  # LOAD_SECOND_COLUMNS, one row per second from the first to the last sample's second
    rows: int  # samples aggregated
    malformed: int  # lines skipped: wrong field count, unparsable or empty values, a truncated last line
    t0_ms: int | None  # the t0 used (None only for a file without samples and no t0 given)


def _read(path: Path, layout: Layout, t0_ms: int | None, block_size: int) -> tuple[Accumulator, int]:
    """One pass: typed columns, or (when a value does not parse) every number read as text and validated."""
    wanted = ("timeStamp", "elapsed", "success", "responseCode", "bytes", "allThreads", "Latency", "Connect",
              "threadName")
    for tolerant in (False, True):
        invalid = [0]
        acc = Accumulator(t0_ms)
        try:
            for batch in batches(path, layout, wanted, tolerant=tolerant, block_size=block_size, invalid=invalid):
                acc.add(batch)
        except pa.ArrowInvalid as exc:
            if tolerant or "conversion error" not in str(exc):
                raise JtlError(f"{path}: {exc}") from exc
            continue
        return acc, invalid[0]
    raise AssertionError("unreachable")


def aggregate(path: Path | str, t0_ms: int | None = None, *, max_malformed_share: float = 0.01,
              columns: Sequence[str] | None = None, block_size: int = 4 << 20) -> JtlResult:
    """Per-second load rows of a JMeter CSV result file.

    t0_ms: the experiment's load start (epoch ms); None takes the smallest timeStamp in the file.
    max_malformed_share: above this share of malformed lines the file is refused (JtlError); a single malformed
        line (typically the last one, cut off when JMeter was stopped) never is.
    columns: field names in file order, for a file without a header row that is not JMeter's default.
    """
    path = Path(path)
    layout = layout_of(path, columns)
    acc, invalid_lines = _read(path, layout, t0_ms, block_size)
    if t0_ms is None and acc.min_ts is not None and acc.t0_ms is not None and acc.min_ts < acc.t0_ms:
        acc, invalid_lines = _read(path, layout, acc.min_ts, block_size)  # an earlier sample came late
    malformed = invalid_lines + acc.bad_values + int(layout.truncated_tail)
    total = acc.rows + malformed
    if malformed > 1 and malformed > max_malformed_share * total:  # one cut-off last line is always tolerated
        raise JtlError(f"{path}: {malformed} of {total} lines are malformed ({malformed / total:.1%}), more than "
                       f"the allowed {max_malformed_share:.1%}; check the file or raise the limit")
    if acc.rows == 0:
        frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in LOAD_SECOND_COLUMNS})
        return JtlResult(frame, 0, malformed, acc.t0_ms)
    return JtlResult(merge(acc), acc.rows, malformed, acc.t0_ms)


@dataclass(frozen=True)
class SampleSpan:
    first_start_ms: int | None  # earliest timeStamp (a sample's start)
    last_end_ms: int | None  # latest timeStamp + elapsed
    rows: int  # well-formed samples
    malformed: int


def sample_span(path: Path | str, *, columns: Sequence[str] | None = None, block_size: int = 4 << 20) -> SampleSpan:
    """When the samples of a JTL start and end, reading only the columns that says (same row rules as aggregate)."""
    path = Path(path)
    layout = layout_of(path, columns)
    for tolerant in (False, True):
        invalid = [0]
        first: int | None = None
        last: int | None = None
        rows = bad = 0
        try:
            for batch in batches(path, layout, REQUIRED_COLUMNS, tolerant=tolerant, block_size=block_size,
                                  invalid=invalid):
                cols = dict(zip(batch.schema.names, batch.columns, strict=True))
                ts, ts_ok = integers(cols["timeStamp"])
                elapsed, elapsed_ok = integers(cols["elapsed"])
                valid = elapsed >= 0
                for ok in (ts_ok, elapsed_ok, booleans(cols["success"])[1]):
                    if ok is not None:
                        valid &= ok
                bad += int(len(valid) - np.count_nonzero(valid))
                if not valid.any():
                    continue
                rows += int(np.count_nonzero(valid))
                starts, ends = ts[valid], ts[valid] + elapsed[valid]
                first = int(starts.min()) if first is None else min(first, int(starts.min()))
                last = int(ends.max()) if last is None else max(last, int(ends.max()))
        except pa.ArrowInvalid as exc:
            if tolerant or "conversion error" not in str(exc):
                raise JtlError(f"{path}: {exc}") from exc
            continue
        return SampleSpan(first, last, rows, invalid[0] + bad + int(layout.truncated_tail))
    raise AssertionError("unreachable")
