"""pandas loaders over the experiment store, by suite, scenario or experiment, ready for notebooks.

Every loader takes an open connection (kubexp.store.db.connect()) and a suite, optionally
narrowed with scenario_id= and experiment_ids=, and returns a DataFrame with the scenario
parameters as columns (pods, workers, mesh, etcd_storage, ...). The per-second frames
(load_seconds, metric_points) look the parameters up once per experiment and carry the text
ones (ids, mesh, etcd_storage) as categoricals; numeric parameters stay numeric. Data of an
experiment always comes from the attempt that finished it, so rows of failed attempts never mix in.
Ids are strings (experiment UUIDs, 16-hex scenario ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from kubexp.records import LOAD_SECOND_COLUMNS

# load_second columns declared NOT NULL (integers); the others may be NULL.
_COUNT_COLUMNS = ("t", "requests", "successes", "failures", "failures_4xx", "failures_5xx", "failures_other")


class AnalysisDataError(LookupError):
    """The store has no data for what was asked (the message says what and where to look)."""


def _frame(conn: psycopg.Connection, query: str | sql.Composed, params: Sequence[Any] = ()) -> pd.DataFrame:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        columns = [column.name for column in cursor.description or []]
        return pd.DataFrame(cursor.fetchall(), columns=columns)


def _expand_params(frame: pd.DataFrame, column: str = "params") -> pd.DataFrame:
    """Replace a jsonb params column by one column per parameter (overwriting same-named columns)."""
    if frame.empty:
        return frame.drop(columns=[column])
    params = pd.DataFrame(list(frame[column]), index=frame.index)
    return pd.concat([frame.drop(columns=[column, *[c for c in params if c in frame]]), params], axis=1)


def _filters(suite: str, scenario_id: str | None, experiment_ids: Sequence[str] | None,
             alias: str = "e", id_column: str = "id") -> tuple[sql.Composed, list[Any]]:
    clauses = [sql.SQL("{}.suite = %s").format(sql.Identifier(alias))]
    params: list[Any] = [suite]
    if scenario_id is not None:
        clauses.append(sql.SQL("{}.scenario_id = %s").format(sql.Identifier(alias)))
        params.append(scenario_id)
    if experiment_ids is not None:
        clauses.append(sql.SQL("{} = ANY(%s::uuid[])").format(sql.Identifier(alias, id_column)))
        params.append([str(e) for e in experiment_ids])
    return sql.SQL(" AND ").join(clauses), params


def suite_record(conn: psycopg.Connection, suite: str) -> dict[str, Any]:
    """The suite as last loaded into the store (name, platform, repetitions, seed, warmup_s, definition, ...)."""
    frame = _frame(conn, "SELECT name, platform, cluster, repetitions, seed, warmup_s, cooldown_s, path, "
                         "definition, loaded_at FROM suite WHERE name = %s", (suite,))
    if frame.empty:
        known = [row[0] for row in conn.execute("SELECT name FROM suite ORDER BY name")]
        raise AnalysisDataError(f"suite {suite!r} is not in the store (known: {', '.join(known) or 'none'}); "
                                f"load it first, e.g. by running its DAG or `kubexp suite sync`")
    return dict(frame.iloc[0])


def experiments(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
                experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Every experiment of a suite, finished or not, with its attempts and scenario parameters.

    Columns: experiment_id, scenario_id, scenario_index, active (scenario still in the matrix), planned
    (active and within the suite's repetitions plus the scenario's extra ones), repetition, status, finished_at,
    finished_attempt_id, t0, attempts, failed_attempts, last_outcome, last_error, + parameters.
    """
    where, params = _filters(suite, scenario_id, experiment_ids)
    query = sql.SQL("""
        SELECT e.id::text AS experiment_id, e.scenario_id, ss.position AS scenario_index, ss.active,
               (ss.active AND e.repetition <= s.repetitions + ss.extra_repetitions) AS planned, e.repetition, e.status,
               e.finished_at, e.finished_attempt_id, fa.load_started_at AS t0,
               count(a.id)::integer AS attempts,
               count(a.id) FILTER (WHERE a.outcome IN ('failed', 'abandoned'))::integer AS failed_attempts,
               (array_agg(a.outcome ORDER BY a.id DESC))[1] AS last_outcome,
               (array_agg(a.error ORDER BY a.id DESC))[1] AS last_error,
               sc.params
        FROM experiment e
        JOIN suite_scenario ss ON ss.suite = e.suite AND ss.scenario_id = e.scenario_id
        JOIN scenario sc ON sc.id = e.scenario_id
        JOIN suite s ON s.name = e.suite
        LEFT JOIN attempt a ON a.experiment_id = e.id
        LEFT JOIN attempt fa ON fa.id = e.finished_attempt_id
        WHERE {where}
        GROUP BY e.id, ss.position, ss.active, ss.extra_repetitions, s.repetitions, sc.params, fa.load_started_at
        ORDER BY ss.position, e.repetition
    """).format(where=where)
    return _expand_params(_frame(conn, query, params))


def experiment_summary(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
                       experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The store's experiment_summary view (finished experiments, suite-configured window), all params as columns."""
    where, params = _filters(suite, scenario_id, experiment_ids, alias="v", id_column="experiment_id")
    query = sql.SQL("SELECT * FROM experiment_summary v WHERE {} ORDER BY scenario_index, repetition").format(where)
    frame = _frame(conn, query, params)
    frame["experiment_id"] = frame["experiment_id"].astype(str)
    return _expand_params(frame)


def scenario_summary(conn: psycopg.Connection, suite: str) -> pd.DataFrame:
    """The store's scenario_summary view: one row per scenario of the suite, all params as columns (no filters)."""
    frame = _frame(conn, "SELECT * FROM scenario_summary WHERE suite = %s ORDER BY scenario_index", (suite,))
    return _expand_params(frame)


def _experiment_parameters(conn: psycopg.Connection, suite: str, scenario_id: str | None,
                           experiment_ids: Sequence[str] | None, *, finished: bool) -> pd.DataFrame:
    """experiment_id, scenario_id and the parameters as columns: one row per experiment the filters select."""
    where, params = _filters(suite, scenario_id, experiment_ids)
    status = sql.SQL("e.status = 'finished' AND ") if finished else sql.SQL("")
    query = sql.SQL("SELECT e.id::text AS experiment_id, e.scenario_id, sc.params FROM experiment e "
                    "JOIN scenario sc ON sc.id = e.scenario_id WHERE {}{} ORDER BY e.id").format(status, where)
    return _expand_params(_frame(conn, query, params))


def _parameter_columns(described: pd.DataFrame, experiment_ids: Sequence[str], codes: np.ndarray, *,
                       categorical: bool) -> dict[str, Any]:
    """scenario_id and the parameters for rows of experiment experiment_ids[code], looked up once per experiment.

    With `categorical`, text columns (ids, mesh, etcd_storage) become categoricals of one byte or two
    per row; numbers stay numbers, so `frame[frame.workers > 60]` works. An experiment missing
    from `described` (finished after it was read) gets missing values.
    """
    table = described.set_index("experiment_id").reindex(pd.Index(list(experiment_ids), dtype=object))
    columns: dict[str, Any] = {}
    for name in table.columns:
        if categorical and not pd.api.types.is_numeric_dtype(table[name]):
            value_codes, values = pd.factorize(table[name], sort=True)
            columns[name] = pd.Categorical.from_codes(value_codes[codes], categories=values)
        else:
            columns[name] = table[name].to_numpy()[codes]
    return columns


def _with_parameters(conn: psycopg.Connection, frame: pd.DataFrame, suite: str, scenario_id: str | None,
                     experiment_ids: Sequence[str] | None, *, finished: bool) -> pd.DataFrame:
    """frame (a few rows per experiment) + scenario_id and the parameters of each row's experiment."""
    described = _experiment_parameters(conn, suite, scenario_id, experiment_ids, finished=finished)
    codes, distinct = pd.factorize(frame["experiment_id"])
    columns = _parameter_columns(described, list(distinct), codes, categorical=False)
    return frame.assign(**{name: column for name, column in columns.items() if name not in frame})


def _repeat_categorical(values: Sequence[Any], which: np.ndarray) -> pd.Categorical:
    """values[which] as a categorical (values: one per series, which: the series of each row)."""
    codes, distinct = pd.factorize(pd.Series(list(values), dtype=object), sort=True)
    return pd.Categorical.from_codes(codes[which], categories=distinct)


def load_seconds(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
                 experiment_ids: Sequence[str] | None = None, columns: Sequence[str] = LOAD_SECOND_COLUMNS,
                 parameters: bool = True) -> pd.DataFrame:
    """Per-second load rows of finished experiments, from their finishing attempt.

    Columns: experiment_id, `columns` (default LOAD_SECOND_COLUMNS; t always), then scenario_id
    and the scenario parameters (parameters=False leaves those out). Rows are sorted by experiment
    and t. experiment_id, scenario_id and the text parameters are categorical (numeric ones stay
    numeric): they are looked up once per experiment, not per row. Each experiment's rows travel as
    one bytea of fixed-width records (int4 counts, float8 with NaN for the nullable rest) that numpy
    decodes, so a 1,400 x 1,200-second suite is 1,400 messages, not 1.68 M rows.
    """
    unknown = [c for c in columns if c not in LOAD_SECOND_COLUMNS]
    if unknown:
        raise ValueError(f"unknown load_second columns {unknown}; choose from {', '.join(LOAD_SECOND_COLUMNS)}")
    wanted = list(dict.fromkeys(["t", *columns]))
    fields = [sql.SQL("int4send({})" if c in _COUNT_COLUMNS else "float8send(coalesce({}::float8, 'NaN'))").format(
        sql.Identifier("l", c)) for c in wanted]
    where, params = _filters(suite, scenario_id, experiment_ids)
    query = sql.SQL("""
        SELECT l.experiment_id::text, count(*), string_agg({record}, ''::bytea)
        FROM load_second l
        JOIN experiment e ON e.id = l.experiment_id AND e.finished_attempt_id = l.attempt_id
        WHERE e.status = 'finished' AND {where}
        GROUP BY l.experiment_id
        ORDER BY l.experiment_id
    """).format(record=sql.SQL(" || ").join(fields), where=where)
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(query, params).fetchall()
    layout = np.dtype([(c, ">i4" if c in _COUNT_COLUMNS else ">f8") for c in wanted])
    records = np.frombuffer(b"".join(row[2] for row in rows), dtype=layout)
    codes = np.repeat(np.arange(len(rows)), [row[1] for row in rows])
    order = np.lexsort((records["t"], codes))
    codes = codes[order]
    ids = [row[0] for row in rows]
    frame = pd.DataFrame({c: records[c][order].astype(np.int64 if c in _COUNT_COLUMNS else np.float64)
                          for c in wanted})
    frame.insert(0, "experiment_id", pd.Categorical.from_codes(codes, categories=ids))
    if not parameters:
        return frame
    described = _experiment_parameters(conn, suite, scenario_id, experiment_ids, finished=True)
    return frame.assign(**_parameter_columns(described, ids, codes, categorical=True))


def platform_events(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
                    experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Platform events (OOM kills, restarts, probe failures, etcd warnings) of the finished experiments.

    Columns: experiment_id, t, at, source, kind, obj, message, then scenario_id and the scenario parameters.
    """
    where, params = _filters(suite, scenario_id, experiment_ids)
    query = sql.SQL("""
        SELECT p.experiment_id::text AS experiment_id, p.t, p.at, p.source, p.kind, p.obj, p.message
        FROM platform_event p
        JOIN experiment e ON e.id = p.experiment_id AND e.finished_attempt_id = p.attempt_id
        WHERE e.status = 'finished' AND {where}
        ORDER BY p.experiment_id, p.t, p.id
    """).format(where=where)
    frame = _frame(conn, query, params)
    return _with_parameters(conn, frame, suite, scenario_id, experiment_ids, finished=True)


def metric_points(conn: psycopg.Connection, suite: str, *, name: str | None = None, scenario_id: str | None = None,
                  experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-second metric points of finished experiments, from their finishing attempt.

    Columns: experiment_id, series_id, source, name, labels (a dict), t, value, then scenario_id
    and the scenario parameters; sorted by experiment, series and t. Each series travels as one
    row with its arrays of t and value (as stored, sql/0002_metric_points_as_arrays.sql);
    experiment_id, source, name, scenario_id and the text parameters are categorical.
    """
    where, params = _filters(suite, scenario_id, experiment_ids)
    if name is not None:
        where = sql.SQL("{} AND s.name = %s").format(where)
        params.append(name)
    query = sql.SQL("""
        SELECT s.experiment_id::text, s.id, s.source, s.name, s.labels, s.t, s.value
        FROM metric_series s
        JOIN experiment e ON e.id = s.experiment_id AND e.finished_attempt_id = s.attempt_id
        WHERE e.status = 'finished' AND {where}
        ORDER BY s.experiment_id, s.id
    """).format(where=where)
    with conn.cursor(binary=True) as cursor:
        series = cursor.execute(query, params).fetchall()
    lengths = np.array([len(row[5]) for row in series], dtype=np.int64)
    which = np.repeat(np.arange(len(series)), lengths)  # the series of every point
    labels = np.empty(len(series), dtype=object)
    labels[:] = [row[4] for row in series]
    experiment_codes, ids = pd.factorize(pd.Series([row[0] for row in series], dtype=object))
    frame = pd.DataFrame({
        "experiment_id": pd.Categorical.from_codes(experiment_codes[which], categories=ids),
        "series_id": np.array([row[1] for row in series], dtype=np.int64)[which],
        "source": _repeat_categorical([row[2] for row in series], which),
        "name": _repeat_categorical([row[3] for row in series], which),
        "labels": labels[which],
        "t": np.fromiter((t for row in series for t in row[5]), dtype=np.int64, count=int(lengths.sum())),
        "value": np.fromiter((v for row in series for v in row[6]), dtype=np.float64, count=int(lengths.sum())),
    })
    described = _experiment_parameters(conn, suite, scenario_id, experiment_ids, finished=True)
    return frame.assign(**_parameter_columns(described, list(ids), experiment_codes[which], categorical=True))


def metric_completeness(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
                        experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Per finished experiment and metric name: series count and min/mean completeness (share of seconds).

    Columns: experiment_id, name, series, completeness_min, completeness_mean, then scenario_id
    and the scenario parameters.
    """
    where, params = _filters(suite, scenario_id, experiment_ids)
    query = sql.SQL("""
        SELECT s.experiment_id::text AS experiment_id, s.name, count(*)::integer AS series,
               min(s.completeness) AS completeness_min, avg(s.completeness) AS completeness_mean
        FROM metric_series s
        JOIN experiment e ON e.id = s.experiment_id AND e.finished_attempt_id = s.attempt_id
        WHERE e.status = 'finished' AND {where}
        GROUP BY s.experiment_id, s.name
        ORDER BY s.experiment_id, s.name
    """).format(where=where)
    frame = _frame(conn, query, params)
    return _with_parameters(conn, frame, suite, scenario_id, experiment_ids, finished=True)


def attempts(conn: psycopg.Connection, suite: str, *, scenario_id: str | None = None,
             experiment_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Every attempt of the suite's experiments (finished or not) with its outcome, error and provenance facts.

    Columns: attempt_id, experiment_id, scenario_id, repetition, run_id, try_number, host,
    started_at, ended_at, outcome, error, counted (its data is the experiment's), facts (a dict),
    then the scenario parameters.
    """
    where, params = _filters(suite, scenario_id, experiment_ids)
    query = sql.SQL("""
        SELECT a.id AS attempt_id, a.experiment_id::text AS experiment_id, e.scenario_id, e.repetition,
               a.run_id, a.try_number, a.host, a.started_at, a.ended_at, a.outcome, a.error,
               (a.id = e.finished_attempt_id) AS counted, coalesce(p.facts, '{{}}'::jsonb) AS facts
        FROM attempt a
        JOIN experiment e ON e.id = a.experiment_id
        LEFT JOIN provenance p ON p.attempt_id = a.id
        WHERE {where}
        ORDER BY a.id
    """).format(where=where)
    frame = _frame(conn, query, params)
    return _with_parameters(conn, frame, suite, scenario_id, experiment_ids, finished=False)
