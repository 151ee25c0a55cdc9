"""JMeter CSV results (JTL) -> one row per second of load, streamed.

A sample belongs to second `t = floor((timeStamp - t0_ms) / 1000)`, with timeStamp as JMeter wrote it
(the sample's start, `sampleresult.timestamp.start=true`). The file is read in blocks by pyarrow's
streaming CSV reader and reduced per block with numpy, so memory stays bounded whatever the file size
and rows may come in any order: every partial result is keyed by absolute second and merged at the end.
Percentiles are exact: elapsed times are whole milliseconds, so a per-second count of each distinct
value (usually a few hundred per second) gives them without keeping the samples.
"""

from __future__ import annotations

import csv
import io
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kubexp.records import LOAD_SECOND_COLUMNS

# JMeter's CSV field order (CSVSaveService); a headerless file with 17 fields has exactly these.
JMETER_DEFAULT_COLUMNS = (
    "timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType", "success",
    "failureMessage", "bytes", "sentBytes", "grpThreads", "allThreads", "URL", "Latency", "IdleTime", "Connect",
)
REQUIRED_COLUMNS = ("timeStamp", "elapsed", "success")
INTEGER_COLUMNS = ("timeStamp", "elapsed", "bytes", "allThreads", "Latency", "Connect")
PERCENTILES = (50, 90, 95, 99)
MAX_SPAN_S = 7 * 86400  # a longer span means broken timestamps, not a load test
ENGINE_PREFIX = re.compile(r"^(\S+:\d+)-")  # distributed mode: "host:port-<thread group> 1-7"
_LOW32 = np.int64(0xFFFFFFFF)


class JtlError(ValueError):
    """The JTL cannot be aggregated; the message names the file and what is wrong."""


@dataclass(frozen=True)
class JtlResult:
    frame: pd.DataFrame  # LOAD_SECOND_COLUMNS, one row per second from the first to the last sample's second
    rows: int  # samples aggregated
    malformed: int  # lines skipped: wrong field count, unparsable or empty values, a truncated last line
    t0_ms: int | None  # the t0 used (None only for a file without samples and no t0 given)


@dataclass(frozen=True)
class _Layout:
    names: tuple[str, ...] | None  # None: the file's own header row names the columns
    present: frozenset[str]
    data_end: int  # bytes to read: up to the last newline (a truncated last line is dropped)
    truncated_tail: bool


def _layout(path: Path, columns: Sequence[str] | None) -> _Layout:
    size = path.stat().st_size
    with open(path, "rb") as raw:
        head = raw.readline(1 << 20).decode("utf-8", errors="replace")
        raw.seek(max(0, size - 1))
        ends_with_newline = size == 0 or raw.read(1) == b"\n"
        data_end = size
        if not ends_with_newline:
            data_end = _last_newline_end(raw, size)
    first = next(csv.reader([head]), [])
    if "timeStamp" in first and "elapsed" in first:
        names = None
        present = frozenset(first)
    elif columns is not None:
        names = tuple(columns)
        present = frozenset(names)
    elif not first or len(first) == len(JMETER_DEFAULT_COLUMNS):
        names = JMETER_DEFAULT_COLUMNS
        present = frozenset(names)
    else:
        raise JtlError(f"{path}: no header row and {len(first)} fields per line, not JMeter's default "
                       f"{len(JMETER_DEFAULT_COLUMNS)}; pass the column names (--columns / columns=) in file order")
    missing = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing:
        raise JtlError(f"{path}: columns {missing} missing (found {sorted(present)}); JMeter must save "
                       f"timeStamp, elapsed and success (jmeter.save.saveservice.* properties)")
    return _Layout(names, present, data_end, truncated_tail=data_end < size and bool(_tail_text(path, data_end)))


def _last_newline_end(raw: io.BufferedReader, size: int) -> int:
    position = size
    while position > 0:
        start = max(0, position - (1 << 16))
        raw.seek(start)
        chunk = raw.read(position - start)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def _tail_text(path: Path, data_end: int) -> str:
    with open(path, "rb") as raw:
        raw.seek(data_end)
        return raw.read().decode("utf-8", errors="replace").strip()


class _Prefix(io.RawIOBase):
    """The first `limit` bytes of a file (to leave out a truncated last line)."""

    def __init__(self, path: Path, limit: int) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)[: self._left]
        count = self._file.readinto(view)
        self._left -= count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _batches(path: Path, layout: _Layout, wanted: Sequence[str], *, tolerant: bool, block_size: int,
             invalid: list[int]) -> Iterator[pa.RecordBatch]:
    """Record batches of the wanted columns. `tolerant` reads numbers as text, validated later."""
    dictionary = pa.dictionary(pa.int32(), pa.string())
    types: dict[str, pa.DataType] = {name: (pa.string() if tolerant else pa.int64()) for name in INTEGER_COLUMNS}
    types.update(success=pa.string() if tolerant else pa.bool_(), responseCode=dictionary, threadName=dictionary)

    def skip(_row: object) -> str:
        invalid[0] += 1
        return "skip"

    if layout.data_end == 0:
        return
    source: object = str(path)
    if layout.data_end < path.stat().st_size:
        source = io.BufferedReader(_Prefix(path, layout.data_end), buffer_size=1 << 20)
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=block_size, column_names=layout.names),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
        convert_options=pacsv.ConvertOptions(
            include_columns=[name for name in wanted if name in layout.present],
            column_types={name: kind for name, kind in types.items() if name in wanted},
            true_values=["true", "TRUE", "True"], false_values=["false", "FALSE", "False"],
        ),
    )
    try:
        yield from _prefetched(reader)
    finally:
        reader.close()
        if isinstance(source, io.BufferedReader):
            source.close()


def _prefetched(reader: pacsv.CSVStreamingReader, depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Parse the next blocks in a thread while the caller reduces this one (pyarrow releases the GIL)."""
    slots: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: pa.RecordBatch | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in reader:
                if not offer(batch):
                    return
            offer(None)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    worker = threading.Thread(target=produce, name="jtl-reader", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _integers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of an int64 or text column; invalid entries are 0."""
    if pa.types.is_string(column.type):
        valid_arrow = pc.and_(pc.utf8_is_digit(column), pc.less_equal(pc.utf8_length(column), 18))
        valid_arrow = pc.fill_null(valid_arrow, False)
        values = pc.cast(pc.if_else(valid_arrow, column, "0"), pa.int64())
        return values.to_numpy(zero_copy_only=False), valid_arrow.to_numpy(zero_copy_only=False)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False), valid


def _booleans(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_string(column.type):
        lower = pc.utf8_lower(column)
        valid_arrow = pc.fill_null(pc.is_in(lower, pa.array(["true", "false"])), False)
        return pc.fill_null(pc.equal(lower, "true"), False).to_numpy(zero_copy_only=False), \
            valid_arrow.to_numpy(zero_copy_only=False)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return pc.fill_null(column, False).to_numpy(zero_copy_only=False), valid


def _dictionary_codes(column: pa.Array, classify: dict[str, int], rule: Callable[[str], int]) -> np.ndarray:
    """Per-row code of a dictionary column, classifying each distinct value once (`rule(value) -> int`)."""
    values = column.dictionary.to_pylist()
    lookup = np.array([classify.setdefault(value, rule(value)) for value in values] or [0], dtype=np.int64)
    indices = pc.fill_null(column.indices, 0).to_numpy(zero_copy_only=False)
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


class _Accumulator:
    """Per-block partial aggregates keyed by absolute second, merged once at the end."""

    def __init__(self, t0_ms: int | None) -> None:
        self.t0_ms = t0_ms
        self.rows = 0
        self.bad_values = 0
        self.min_ts: int | None = None
        self.columns: set[str] = set()
        self.sums: list[tuple[np.ndarray, np.ndarray]] = []  # seconds, (k, 7) sums (see SUM_FIELDS)
        self.hists: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # second, elapsed, count
        self.threads: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # second, engine, max allThreads
        self.codes: dict[str, int] = {}  # responseCode -> class (response_class)
        self.thread_engine: dict[str, int] = {}  # threadName -> engine number
        self.engines: dict[str, int] = {}  # engine ("host:port" prefix, "" locally) -> number

    SUM_FIELDS = ("requests", "successes", "failures_4xx", "failures_5xx", "latency", "connect", "bytes")

    def add(self, batch: pa.RecordBatch) -> None:
        cols = dict(zip(batch.schema.names, batch.columns, strict=True))
        self.columns.update(cols)
        parsed = {name: _integers(cols[name]) for name in INTEGER_COLUMNS if name in cols}
        success, success_ok = _booleans(cols["success"])
        valid = success_ok & parsed["elapsed"][1] & (parsed["elapsed"][0] >= 0)
        for _values, ok in parsed.values():
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
        keys, counts = np.unique((rel << 32) | elapsed, return_counts=True)
        self.hists.append((first + (keys >> 32), keys & _LOW32, counts))
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
            code_column = cols["responseCode"].take(pa.array(_row_numbers(keep, failed)))
            classes = _dictionary_codes(code_column, self.codes, response_class)
            for column, code in ((2, 4), (3, 5)):
                sums[:, column] = np.bincount(rel[failed[classes == code]], minlength=size)[occupied]
        for column, name in ((4, "Latency"), (5, "Connect"), (6, "bytes")):
            if name in values:
                sums[:, column] = np.bincount(rel, weights=values[name], minlength=size)[occupied]
        self.sums.append((first + occupied, sums))

    def _add_threads(self, rel: np.ndarray, size: int, first: int, threads: np.ndarray,
                     names: pa.Array | None, keep: np.ndarray | slice) -> None:
        if names is None:
            engine = np.zeros(len(rel), dtype=np.int64)
        else:
            if not isinstance(keep, slice):
                names = names.take(pa.array(keep))
            engine = _dictionary_codes(names, self.thread_engine,
                                       lambda name: self.engines.setdefault(_engine_of(name), len(self.engines)))
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


def _merge(acc: _Accumulator) -> pd.DataFrame:
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
    frame = pd.DataFrame({"t": t})
    for index, name in enumerate(("requests", "successes", "failures_4xx", "failures_5xx")):
        column = np.zeros(len(t), dtype=np.int64)
        column[at] = sums[:, index]
        frame[name] = column
    frame["failures"] = frame["requests"] - frame["successes"]
    frame["failures_other"] = frame["failures"] - frame["failures_4xx"] - frame["failures_5xx"]
    _elapsed_statistics(acc, frame, first)
    requests = sums[:, 0].astype(float)
    for index, name, source in ((4, "latency_mean_ms", "Latency"), (5, "connect_mean_ms", "Connect")):
        column = np.full(len(t), np.nan)
        if source in acc.columns:
            column[at] = sums[:, index] / requests
        frame[name] = column
    frame["bytes"] = pd.array(np.zeros(len(t), dtype=np.int64), dtype="Int64")
    if "bytes" in acc.columns:
        frame.loc[at, "bytes"] = sums[:, 6]
    else:
        frame["bytes"] = pd.NA
    frame["threads"] = pd.array([pd.NA] * len(t), dtype="Int64")
    if acc.threads:
        frame["threads"] = _threads(acc, first, len(t))
    return frame[list(LOAD_SECOND_COLUMNS)]


def _elapsed_statistics(acc: _Accumulator, frame: pd.DataFrame, first: int) -> None:
    """Mean, exact nearest-rank percentiles and max of elapsed, from per-second value counts."""
    second = np.concatenate([part[0] for part in acc.hists])
    elapsed = np.concatenate([part[1] for part in acc.hists])
    counts = np.concatenate([part[2] for part in acc.hists])
    keys = ((second - first) << 32) | elapsed
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
    size = len(frame)

    def per_second(values: np.ndarray) -> np.ndarray:
        column = np.full(size, np.nan)
        column[at] = values
        return column

    frame["elapsed_mean_ms"] = per_second(np.add.reduceat(value * counts, seg) / n)
    for p in PERCENTILES:
        rank = (p * n + 99) // 100  # nearest rank: smallest value with at least p % of samples at or below
        frame[f"elapsed_p{p}_ms"] = per_second(value[np.searchsorted(cumulative, before + rank)].astype(float))
    ends = np.concatenate((seg[1:], [len(value)])) - 1
    frame["elapsed_max_ms"] = per_second(value[ends].astype(float))


def _threads(acc: _Accumulator, first: int, size: int) -> pd.arrays.IntegerArray:
    """Per second: the sum over engines of each engine's highest allThreads (one engine per JMeter server)."""
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
    seen = np.bincount(keys[starts] // width, minlength=size) > 0
    threads = pd.array(total, dtype="Int64")
    threads[~seen] = pd.NA
    return threads


def _read(path: Path, layout: _Layout, t0_ms: int | None, block_size: int) -> tuple[_Accumulator, int]:
    """One pass: typed columns, or (when a value does not parse) every number read as text and validated."""
    wanted = ("timeStamp", "elapsed", "success", "responseCode", "bytes", "allThreads", "Latency", "Connect",
              "threadName")
    for tolerant in (False, True):
        invalid = [0]
        acc = _Accumulator(t0_ms)
        try:
            for batch in _batches(path, layout, wanted, tolerant=tolerant, block_size=block_size, invalid=invalid):
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
    layout = _layout(path, columns)
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
    return JtlResult(_merge(acc), acc.rows, malformed, acc.t0_ms)


@dataclass(frozen=True)
class SampleSpan:
    first_start_ms: int | None  # earliest timeStamp (a sample's start)
    last_end_ms: int | None  # latest timeStamp + elapsed
    rows: int  # well-formed samples
    malformed: int


def sample_span(path: Path | str, *, columns: Sequence[str] | None = None, block_size: int = 4 << 20) -> SampleSpan:
    """When the samples of a JTL start and end, reading only the columns that says (same row rules as aggregate)."""
    path = Path(path)
    layout = _layout(path, columns)
    for tolerant in (False, True):
        invalid = [0]
        first: int | None = None
        last: int | None = None
        rows = bad = 0
        try:
            for batch in _batches(path, layout, REQUIRED_COLUMNS, tolerant=tolerant, block_size=block_size,
                                  invalid=invalid):
                cols = dict(zip(batch.schema.names, batch.columns, strict=True))
                ts, ts_ok = _integers(cols["timeStamp"])
                elapsed, elapsed_ok = _integers(cols["elapsed"])
                valid = ts_ok & elapsed_ok & _booleans(cols["success"])[1] & (elapsed >= 0)
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
