"""Reading JMeter CSV results in blocks: which columns, where the data ends, and value checks.

pyarrow's streaming CSV reader parses blocks in a background thread (it releases the GIL) while the
caller reduces the previous block. Numbers are read typed; when a value does not parse, the caller
re-reads with `tolerant=True`, where numbers come as text and `integers`/`booleans` validate them row
by row, so one broken value costs one row, not the file.
"""

from __future__ import annotations

import csv
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

JMETER_DEFAULT_COLUMNS = (
    "timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType", "success",
    "failureMessage", "bytes", "sentBytes", "grpThreads", "allThreads", "URL", "Latency", "IdleTime", "Connect",
)
REQUIRED_COLUMNS = ("timeStamp", "elapsed", "success")
INTEGER_COLUMNS = ("timeStamp", "elapsed", "bytes", "allThreads", "Latency", "Connect")


class JtlError(ValueError):
    """The JTL cannot be aggregated; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]  # column names in file order: the header row's, JMeter's default, or given
    data_start: int  # byte offset of the first record (after the header row, if any)
    data_end: int  # bytes to read: up to the last newline (a truncated last line is dropped)
    truncated_tail: bool

    @property
    def present(self) -> frozenset[str]:
        return frozenset(self.names)


def layout_of(path: Path, columns: Sequence[str] | None) -> Layout:
    size = path.stat().st_size
    with open(path, "rb") as raw:
        head_bytes = raw.readline(1 << 20)
        raw.seek(max(0, size - 1))
        ends_with_newline = size == 0 or raw.read(1) == b"\n"
        data_end = size if ends_with_newline else _last_newline_end(raw, size)
    first = next(csv.reader([head_bytes.decode("utf-8", errors="replace")]), [])
    data_start = 0
    if "timeStamp" in first and "elapsed" in first:
        names = tuple(first)
        data_start = min(len(head_bytes), data_end)
    elif columns is not None:
        names = tuple(columns)
    elif not first or len(first) == len(JMETER_DEFAULT_COLUMNS):
        names = JMETER_DEFAULT_COLUMNS
    else:
        raise JtlError(f"{path}: no header row and {len(first)} fields per line, not JMeter's default "
                       f"{len(JMETER_DEFAULT_COLUMNS)}; pass the column names (--columns / columns=) in file order")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise JtlError(f"{path}: columns {missing} missing (found {sorted(names)}); JMeter must save "
                       f"timeStamp, elapsed and success (jmeter.save.saveservice.* properties)")
    return Layout(names, data_start, data_end, truncated_tail=data_end < size and bool(_tail_text(path, data_end)))


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


def _is_record(line: bytes, layout: Layout) -> bool:
    fields = next(csv.reader([line.decode("utf-8", errors="replace")]), [])
    return len(fields) == len(layout.names) and fields[layout.names.index("timeStamp")].isdigit()


def _record_start_after(raw: io.BufferedReader, offset: int, layout: Layout) -> int | None:
    """The first line start after `offset` whose line is a whole record.

    A line inside a quoted field (a failure message with a newline) is not: its first field is not a
    time stamp or its field count is off, so a cut there is never chosen.
    """
    raw.seek(offset)
    window = raw.read(min(1 << 20, layout.data_end - offset))
    begin = window.find(b"\n") + 1
    while begin > 0:
        finish = window.find(b"\n", begin)
        if finish < 0:
            return None
        if _is_record(window[begin:finish], layout):
            return offset + begin
        begin = finish + 1
    return None


def record_ranges(path: Path, layout: Layout, parts: int) -> list[tuple[int, int]]:
    """Up to `parts` byte ranges of the data, each starting at a record, to be parsed in parallel."""
    start, end = layout.data_start, layout.data_end
    cuts = [start]
    if parts > 1:
        with open(path, "rb") as raw:
            for part in range(1, parts):
                cut = _record_start_after(raw, start + (end - start) * part // parts, layout)
                if cut is not None and cuts[-1] < cut < end:
                    cuts.append(cut)
    cuts.append(end)
    return [(first, last) for first, last in zip(cuts, cuts[1:], strict=False) if last > first]


class _Range(io.RawIOBase):
    """Bytes [start, end) of a file."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self._file = open(path, "rb")  # closed by close()
        self._file.seek(start)
        self._left = end - start

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


def batches(path: Path, layout: Layout, wanted: Sequence[str], byte_range: tuple[int, int], *, tolerant: bool,
            block_size: int, invalid: list[int]) -> Iterator[pa.RecordBatch]:
    """Record batches of the wanted columns from records in byte_range. `tolerant` reads numbers as text."""
    dictionary = pa.dictionary(pa.int32(), pa.string())
    types: dict[str, pa.DataType] = {name: (pa.string() if tolerant else pa.int64()) for name in INTEGER_COLUMNS}
    types.update(success=pa.string() if tolerant else pa.bool_(), responseCode=dictionary, threadName=dictionary)

    def skip(_row: object) -> str:
        invalid[0] += 1
        return "skip"

    if byte_range[1] <= byte_range[0]:
        return
    source = io.BufferedReader(_Range(path, *byte_range), buffer_size=1 << 20)
    try:
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
    finally:
        source.close()


def first_timestamp(path: Path, layout: Layout) -> int | None:
    """The smallest timeStamp among the first 64 kB of records (a provisional t0), None if none parses."""
    with open(path, "rb") as raw:
        raw.seek(layout.data_start)
        text = raw.read(min(1 << 16, layout.data_end - layout.data_start)).decode("utf-8", errors="replace")
    column = layout.names.index("timeStamp")
    stamps = [int(fields[column]) for fields in csv.reader(text.splitlines()[:-1])
              if len(fields) == len(layout.names) and fields[column].isdigit()]
    return min(stamps) if stamps else None


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


def _bits(bitmap: pa.Buffer, offset: int, length: int) -> np.ndarray:
    """Bits offset .. offset + length - 1 of an Arrow bitmap (least significant bit first) as bools."""
    first = offset // 8
    packed = np.frombuffer(bitmap, dtype=np.uint8)[first:(offset + length + 7) // 8]
    return np.unpackbits(packed, bitorder="little")[offset - 8 * first:][:length].view(bool)


def filled(column: pa.Array, fill: int) -> np.ndarray:
    """A bool or signed integer column's values, `fill` where null, read from its buffers: Array.to_numpy imports
    pandas when it is installed (0.2 s of `kubexp jtl aggregate`, which never needs it)."""
    if len(column) == 0:
        return np.zeros(0, dtype=bool if pa.types.is_boolean(column.type) else np.int64)
    data = column.buffers()[1]
    if pa.types.is_boolean(column.type):
        values = _bits(data, column.offset, len(column))
    else:
        width = column.type.byte_width
        values = np.frombuffer(data, dtype=f"i{width}", count=len(column), offset=column.offset * width)
    return values if column.null_count == 0 else np.where(valid(column), values, fill)


def valid(column: pa.Array) -> np.ndarray:
    """Which entries of a column are not null."""
    validity = column.buffers()[0]
    return np.full(len(column), True) if validity is None else _bits(validity, column.offset, len(column))


def integers(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, valid) of an int64 or text column; invalid entries are 0, valid None when all are."""
    if pa.types.is_string(column.type):
        import pyarrow.compute as pc  # only for a file with unparsable values (30 ms)

        valid_arrow = pc.and_(pc.utf8_is_digit(column), pc.less_equal(pc.utf8_length(column), 18))
        valid_arrow = pc.fill_null(valid_arrow, False)
        values = pc.cast(pc.if_else(valid_arrow, column, "0"), pa.int64())
        return filled(values, 0), filled(valid_arrow, False)
    return filled(column, 0), None if column.null_count == 0 else valid(column)


def booleans(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, valid) of a bool or text column; valid None when every entry is."""
    if pa.types.is_string(column.type):
        import pyarrow.compute as pc

        lower = pc.utf8_lower(column)
        true = pc.equal(lower, "true")
        return filled(true, False), filled(pc.or_(true, pc.equal(lower, "false")), False)
    return filled(column, False), None if column.null_count == 0 else valid(column)
