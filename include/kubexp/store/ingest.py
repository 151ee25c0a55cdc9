"""Storing an experiment's measurements: bulk COPY, each kind replaced as a whole in one transaction.

Storing again (a retried collect task, a later attempt) replaces the experiment's earlier rows of
each kind given, so there are never duplicates and never a mix of two attempts' measurements.
Artifacts are the exception: files of earlier, failed attempts stay listed as evidence.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from kubexp.records import EXPERIMENT_LOAD_COLUMNS, LOAD_SECOND_COLUMNS, Collected, MetricSeries, completeness
from kubexp.store.db import StoreError

# PostgreSQL binary COPY: header, and a trailer of field count -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_WIDTH = {"int4": (">i4", 4), "int8": (">i8", 8), "float8": (">f8", 8), "uuid": ("S16", 16)}

LOAD_SECOND_TYPES: dict[str, str] = {
    column: "int8" if column == "bytes" else "float8" if column.endswith("_ms") else "int4"
    for column in LOAD_SECOND_COLUMNS
}
COUNT_COLUMNS = ("t", "requests", "successes", "failures", "failures_4xx", "failures_5xx", "failures_other")


Column = tuple[str, Any]  # (pg type, numpy array of values or one scalar for every row)


def binary_copy_data(columns: dict[str, Column], rows: int) -> bytes:
    """Encode columns (name -> (pg type, values; NaN = NULL)) as one binary COPY stream.

    Vectorised: rows are grouped by which fields are NULL, each group laid out as one numpy record
    array (a NULL field is just its length -1), so a frame is encoded in a few numpy operations.
    """
    names = list(columns)
    # one bit per NULL field; rows with the same mask share one record layout
    masks = np.zeros(rows, dtype=np.int64)
    for i, name in enumerate(names):
        values = np.asarray(columns[name][1])
        if values.ndim and np.issubdtype(values.dtype, np.floating):
            masks |= np.isnan(values).astype(np.int64) << i
    parts = [_COPY_HEADER]
    patterns, group = np.unique(masks, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    for g, mask in enumerate(patterns):
        picked = group == g
        pattern = [bool(mask >> i & 1) for i in range(len(names))]
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i, name in enumerate(names):
            fields.append((f"len_{i}", ">i4"))
            if not pattern[i]:
                fields.append((f"val_{i}", _WIDTH[columns[name][0]][0]))
        records = np.empty(int(picked.sum()), dtype=np.dtype(fields))
        records["count"] = len(names)
        for i, name in enumerate(names):
            kind, values = columns[name]
            if pattern[i]:
                records[f"len_{i}"] = -1
                continue
            records[f"len_{i}"] = _WIDTH[kind][1]
            records[f"val_{i}"] = values if np.ndim(values) == 0 else np.asarray(values)[picked]
        parts.append(records.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def _copy(conn: psycopg.Connection, table: str, columns: list[str], data: bytes) -> None:
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"  # our own constant names
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(data)


def load_frame_columns(load: pd.DataFrame, experiment_id: str, attempt_id: int) -> dict[str, Column]:
    """Check a per-second load frame and turn it into typed columns for COPY."""
    missing = [column for column in LOAD_SECOND_COLUMNS if column not in load.columns]
    if missing:
        raise StoreError(f"load frame lacks columns {', '.join(missing)}; expected kubexp.records.LOAD_SECOND_COLUMNS")
    if load["t"].duplicated().any():
        raise StoreError(f"load frame has duplicate seconds t={sorted(set(load['t'][load['t'].duplicated()]))[:5]}")
    columns: dict[str, Column] = {
        "experiment_id": ("uuid", np.frombuffer(uuid.UUID(experiment_id).bytes, dtype="S16")[0]),
        "attempt_id": ("int8", np.int64(attempt_id)),
    }
    try:
        matrix = load[list(LOAD_SECOND_COLUMNS)].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"load frame has non-numeric values: {exc}") from exc
    for i, column in enumerate(LOAD_SECOND_COLUMNS):
        kind = LOAD_SECOND_TYPES[column]
        values = matrix[:, i]
        if kind != "float8":
            empty = np.isnan(values)
            if column in COUNT_COLUMNS and empty.any():
                raise StoreError(f"load frame column {column} has empty values; counts must be whole numbers")
            if not np.array_equal(values[~empty], np.round(values[~empty])):
                raise StoreError(f"load frame column {column} has fractional values; it must hold whole numbers")
        columns[column] = (kind, values)  # NaN is stored as NULL (bytes, threads and latencies may be unknown)
    return columns


def store_experiment_data(
    conn: psycopg.Connection,
    experiment_id: str,
    attempt_id: int,
    collected: Collected,
    *,
    t0: datetime,
) -> None:
    """Store what an attempt collected, in one transaction; each kind collected (not None) replaces the
    earlier rows of that kind.

    `t0` is the wall clock of t = 0 (timezone-aware). Each metric series is stored with its completeness
    over the scenario's duration_s (kubexp.records.completeness, the rule finalize applies). The exact
    statistics over every load sample (`load_whole`) are stored and replaced with the load rows.
    """
    if collected.load_whole is not None and collected.load is None:
        raise StoreError("load_whole is stored with the load rows it was computed with; give load too")
    whole = _whole_row(collected.load_whole) if collected.load_whole is not None else None
    if t0.tzinfo is None:
        raise StoreError("t0 must be timezone-aware (UTC); got a naive datetime")
    own_transaction = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if own_transaction:
            # The commit need not wait for its WAL flush (about a quarter of an ingest's time here): WAL is
            # flushed in order, so the synchronous commit of finish_experiment makes these rows
            # durable first. A server crash in between loses only unfinished data, which finish
            # then refuses for lack of load rows.
            conn.execute("SET LOCAL synchronous_commit = off")
        row = conn.execute(
            """
            SELECT e.status, a.outcome, (sc.params ->> 'duration_s')::integer
            FROM experiment e JOIN scenario sc ON sc.id = e.scenario_id
            LEFT JOIN attempt a ON a.id = %s AND a.experiment_id = e.id
            WHERE e.id = %s FOR UPDATE OF e
            """,
            (attempt_id, experiment_id),
        ).fetchone()
        if row is None:
            raise StoreError(f"experiment {experiment_id} does not exist")
        status, outcome, scenario_duration = row
        if outcome is None:
            raise StoreError(f"attempt {attempt_id} is not an attempt of experiment {experiment_id}")
        if status == "finished":
            raise StoreError(f"experiment {experiment_id} is finished; its data is final")
        if outcome != "running":
            raise StoreError(f"attempt {attempt_id} ended as {outcome}; it may no longer store data")
        conn.execute("UPDATE attempt SET load_started_at = %s, heartbeat_at = now() WHERE id = %s", (t0, attempt_id))
        load, events, artifacts = collected.load, collected.events, collected.artifacts
        if load is not None:
            columns = load_frame_columns(load, experiment_id, attempt_id)
            conn.execute("DELETE FROM load_second WHERE experiment_id = %s", (experiment_id,))
            _copy(conn, "load_second", list(columns), binary_copy_data(columns, len(load)))
            conn.execute("DELETE FROM load_experiment WHERE experiment_id = %s", (experiment_id,))
            if whole is not None:
                conn.execute(f"INSERT INTO load_experiment (experiment_id, attempt_id, {', '.join(whole)}) "
                             f"VALUES (%s, %s{', %s' * len(whole)})",  # column names: our own constants
                             (experiment_id, attempt_id, *whole.values()))
        if collected.series is not None:
            _store_series(conn, experiment_id, attempt_id, collected.series, scenario_duration)
        if events is not None:
            conn.execute("DELETE FROM platform_event WHERE experiment_id = %s", (experiment_id,))
            _copy_rows(conn, "platform_event", ["experiment_id", "attempt_id", "t", "at", "source", "kind", "obj",
                                                "message"],
                       [(experiment_id, attempt_id, e.t, e.at, e.source, e.kind, e.obj, e.message) for e in events])
        if artifacts is not None:
            conn.execute("DELETE FROM artifact WHERE experiment_id = %s AND attempt_id = %s",
                         (experiment_id, attempt_id))
            _copy_rows(conn, "artifact", ["experiment_id", "attempt_id", "kind", "path", "sha256", "size"],
                       [(experiment_id, attempt_id, a.kind, a.path, a.sha256, a.size) for a in artifacts])


def _whole_row(whole: Mapping[str, float | None]) -> dict[str, float | None]:
    """Check the exact per-experiment statistics (JtlResult.whole) before anything is stored."""
    missing = [name for name in EXPERIMENT_LOAD_COLUMNS if name not in whole]
    if missing:
        raise StoreError(f"load_whole lacks {', '.join(missing)}; expected kubexp.records.EXPERIMENT_LOAD_COLUMNS")
    row: dict[str, float | None] = {}
    for name in EXPERIMENT_LOAD_COLUMNS:
        value = whole[name]
        row[name] = None if value is None or np.isnan(float(value)) else float(value)
    if row["requests"] is None or row["successes"] is None:
        raise StoreError("load_whole needs the counts requests and successes")
    return {**row, "requests": int(row["requests"]), "successes": int(row["successes"])}


def _copy_rows(conn: psycopg.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for values in rows:
            copy.write_row(values)


def _store_series(
    conn: psycopg.Connection, experiment_id: str, attempt_id: int, series: list[MetricSeries], duration_s: int
) -> None:
    """One row per series, its points as arrays t (ascending) and value (sql/0002_metric_points_as_arrays.sql)."""
    conn.execute("DELETE FROM metric_series WHERE experiment_id = %s", (experiment_id,))
    if not series:
        return
    statement = ("COPY metric_series (experiment_id, attempt_id, source, name, labels, points, completeness, t, value) "
                 "FROM STDIN (FORMAT binary)")
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["uuid", "int8", "text", "text", "jsonb", "int4", "float8", "int4[]", "float8[]"])
        experiment_uuid = uuid.UUID(experiment_id)
        for one in series:
            points = np.array(one.points, dtype=float).reshape(-1, 2)
            points = points[~np.isnan(points[:, 1])]  # Prometheus NaN (e.g. 0/0) is no measurement: a missing point
            points = points[np.argsort(points[:, 0], kind="stable")]
            t = points[:, 0].astype(np.int64)
            if np.any(t[1:] == t[:-1]):
                raise StoreError(f"metric series {one.name} {one.labels} has several points for the same second")
            copy.write_row((experiment_uuid, attempt_id, one.source, one.name, Jsonb(one.labels), len(t),
                            completeness(one, duration_s), t.tolist(), points[:, 1].tolist()))
