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
import pyarrow.compute as pc
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
    names: tuple[str, ...] | None  # None: the file's own header row names the columns
    present: frozenset[str]
    data_end: int  # bytes to read: up to the last newline (a truncated last line is dropped)
    truncated_tail: bool


def layout_of(path: Path, columns: Sequence[str] | None) -> Layout:
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
    return Layout(names, present, data_end, truncated_tail=data_end < size and bool(_tail_text(path, data_end)))


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
        self._file = open(path, "rb")  # closed by close()
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


def batches(path: Path, layout: Layout, wanted: Sequence[str], *, tolerant: bool, block_size: int,
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


def integers(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, valid) of an int64 or text column; invalid entries are 0, valid None when all are."""
    if pa.types.is_string(column.type):
        valid_arrow = pc.and_(pc.utf8_is_digit(column), pc.less_equal(pc.utf8_length(column), 18))
        valid_arrow = pc.fill_null(valid_arrow, False)
        values = pc.cast(pc.if_else(valid_arrow, column, "0"), pa.int64())
        return values.to_numpy(zero_copy_only=False), valid_arrow.to_numpy(zero_copy_only=False)
    if column.null_count == 0:
        return column.to_numpy(zero_copy_only=False), None
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False), valid


def booleans(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, valid) of a bool or text column; valid None when every entry is."""
    if pa.types.is_string(column.type):
        lower = pc.utf8_lower(column)
        valid_arrow = pc.fill_null(pc.is_in(lower, pa.array(["true", "false"])), False)
        return pc.fill_null(pc.equal(lower, "true"), False).to_numpy(zero_copy_only=False), \
            valid_arrow.to_numpy(zero_copy_only=False)
    if column.null_count == 0:
        return column.to_numpy(zero_copy_only=False), None
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    return pc.fill_null(column, False).to_numpy(zero_copy_only=False), valid
