"""Successful-only response times and exact per-experiment statistics: stored once per experiment, summarised,
used by the elapsed_p99_ms SLO, and absent (NULL) for experiments collected before sql/0006."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from store_fixtures import T0, load_frame, make_suite

from kubexp import settings
from kubexp.analysis import slo
from kubexp.load.jtl import JtlResult, aggregate
from kubexp.records import Collected
from kubexp.store import attempts, db, experiments, ingest, migrations, suites

T0_MS = int(T0.timestamp() * 1000)


def mixed_jtl(path: Path, seconds: int = 10) -> Path:
    """Per second: 20 successes at 100..290 ms (Latency = elapsed - 5, Connect 3) and 30 fast 503s (2 ms)."""
    lines = ["timeStamp,elapsed,success,responseCode,Latency,Connect"]
    for second in range(seconds):
        lines += [f"{T0_MS + second * 1000 + i},{100 + 10 * i},true,200,{95 + 10 * i},3" for i in range(20)]
        lines += [f"{T0_MS + second * 1000 + 500 + i},2,false,503,2,1" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    return path


def collected(parsed: JtlResult) -> Collected:
    return Collected(load=parsed.frame, load_whole=parsed.whole)


def experiment_of(conn: psycopg.Connection, tmp_path: Path) -> str:
    suite = make_suite(tmp_path, slo={"p99": {"figure": "elapsed_p99_ms", "max": 250}})
    suites.sync_suite(conn, suite)
    return str(conn.execute("SELECT id FROM experiment ORDER BY repetition, scenario_id LIMIT 1").fetchone()[0])


def test_collecting_twice_keeps_one_row_set_and_the_summaries_leave_failures_out(
        conn: psycopg.Connection, tmp_path: Path) -> None:
    experiment_id = experiment_of(conn, tmp_path)
    parsed = aggregate(mixed_jtl(tmp_path / "mixed.jtl"), T0_MS)
    first = attempts.open_attempt(conn, experiment_id, "run-1", 1, "host")
    for _ in range(2):  # a retried collect
        ingest.store_experiment_data(conn, experiment_id, first, collected(parsed), t0=T0)
    assert conn.execute("SELECT count(*), min(attempt_id) FROM load_experiment").fetchone() == (1, first)
    assert conn.execute("SELECT count(*) FROM load_second").fetchone() == (10,)
    attempts.close_attempt(conn, first, "failed", "lost its platform")
    second = attempts.open_attempt(conn, experiment_id, "run-2", 1, "host")  # a later attempt collects again
    ingest.store_experiment_data(conn, experiment_id, second, collected(parsed), t0=T0)
    assert conn.execute("SELECT count(*), min(attempt_id) FROM load_experiment").fetchone() == (1, second)
    experiments.finish_experiment(conn, experiment_id, second)

    row = conn.execute(
        "SELECT elapsed_mean_ms, success_elapsed_mean_ms, success_elapsed_p50_median_ms, success_processing_mean_ms, "
        "whole_requests, whole_successes, whole_elapsed_p50_ms, whole_success_elapsed_p50_ms, "
        "whole_success_elapsed_p99_ms, whole_success_processing_mean_ms FROM experiment_summary").fetchone()
    successes = [100 + 10 * i for i in range(20)]  # 100 .. 290, mean 195; nearest-rank p50 = 190, p99 = 290
    assert row[0] == pytest.approx((sum(successes) + 30 * 2) / 50)  # all requests: 79.2 ms
    assert row[1:4] == (pytest.approx(195.0), 190.0, pytest.approx(195.0 - 5 - 3))
    assert row[4:] == (500, 200, 2.0, 190.0, 290.0, pytest.approx(187.0))
    scenario = conn.execute("SELECT success_elapsed_mean_ms, success_processing_mean_ms FROM scenario_summary "
                            "WHERE experiments = 1").fetchone()
    assert scenario == (pytest.approx(195.0), pytest.approx(187.0))
    # The SLO figure is the exact p99 of the successful requests (290), not of all requests' per-second p99s.
    assert slo.figure_values(conn, [experiment_id], "elapsed_p99_ms") == {experiment_id: (second, 290.0)}


def test_whole_statistics_need_their_load_rows_and_every_column(conn: psycopg.Connection, tmp_path: Path) -> None:
    experiment_id = experiment_of(conn, tmp_path)
    attempt = attempts.open_attempt(conn, experiment_id, "run-1", 1, "host")
    parsed = aggregate(mixed_jtl(tmp_path / "mixed.jtl", seconds=2), T0_MS)
    with pytest.raises(db.StoreError, match="give load too"):
        ingest.store_experiment_data(conn, experiment_id, attempt, Collected(load_whole=parsed.whole), t0=T0)
    with pytest.raises(db.StoreError, match="lacks success_elapsed_p99_ms"):
        broken = {k: v for k, v in parsed.whole.items() if k != "success_elapsed_p99_ms"}
        ingest.store_experiment_data(conn, experiment_id, attempt, Collected(load=parsed.frame, load_whole=broken),
                                     t0=T0)
    ingest.store_experiment_data(conn, experiment_id, attempt, collected(parsed), t0=T0)
    ingest.store_experiment_data(conn, experiment_id, attempt, Collected(load=load_frame()), t0=T0)  # without them
    assert conn.execute("SELECT count(*) FROM load_experiment").fetchone() == (0,)


def test_experiments_stored_before_the_migration_stay_readable_with_null_new_figures(
        database_url: str, tmp_path: Path) -> None:
    sql_dir = tmp_path / "sql"
    shutil.copytree(settings.SQL_DIR, sql_dir, ignore=shutil.ignore_patterns("views"))
    (sql_dir / "views").mkdir()
    (sql_dir / "0006_successful_response_times.sql").unlink()
    migrations.upgrade(database_url, sql_dir)  # the schema as it was, without the summaries
    old_columns = [c for c in load_frame().columns if not c.startswith("success_")]
    with db.connect(database_url) as conn:
        suites.sync_suite(conn, make_suite(tmp_path, slo={"p99": {"figure": "elapsed_p99_ms", "max": 250}}))
        done, stored = [str(row[0]) for row in conn.execute(
            "SELECT id FROM experiment ORDER BY repetition, scenario_id LIMIT 2").fetchall()]
        attempt = {}
        for experiment_id in (done, stored):
            attempt[experiment_id] = attempts.open_attempt(conn, experiment_id, f"run-{experiment_id}", 1, "host")
            with conn.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO load_second (experiment_id, attempt_id, {', '.join(old_columns)}) "
                    f"VALUES (%s, %s{', %s' * len(old_columns)})",
                    [(experiment_id, attempt[experiment_id], *(None if value != value else value for value in row))
                     for row in load_frame()[old_columns].itertuples(index=False)])
        # finished then, with the aggregate the old code wrote
        conn.execute("UPDATE attempt SET outcome = 'succeeded', ended_at = now() WHERE id = %s", (attempt[done],))
        conn.execute("UPDATE experiment SET status = 'finished', finished_at = now(), finished_attempt_id = %s "
                     "WHERE id = %s", (attempt[done], done))
        conn.execute("INSERT INTO experiment_aggregate (experiment_id, attempt_id, window_start_s, window_end_s, "
                     "seconds, seconds_with_load, requests, successes, successes_sq, failures, failures_4xx, "
                     "failures_5xx, failures_other, elapsed_mean_ms, elapsed_p99_median_ms) "
                     "VALUES (%s, %s, 0, 10, 10, 10, 510, 500, 25000, 10, 0, 10, 0, 14.5, 14.5)",
                     (done, attempt[done]))
    assert migrations.upgrade(database_url) == ["0006_successful_response_times", "views/summaries"]
    with db.connect(database_url) as conn:
        experiments.finish_experiment(conn, stored, attempt[stored])  # aggregates the rows stored before
        rows = conn.execute("SELECT experiment_id::text, requests, successes, elapsed_mean_ms, "
                            "elapsed_p99_median_ms, success_elapsed_mean_ms, success_processing_mean_ms, "
                            "whole_requests, whole_success_elapsed_p99_ms FROM experiment_summary").fetchall()
        assert sorted(rows) == sorted([(done, 510, 500, 14.5, 14.5, None, None, None, None),
                                       (stored, 510, 500, pytest.approx(14.5), 14.5, None, None, None, None)])
        assert conn.execute("SELECT count(*), count(success_elapsed_mean_ms) FROM load_second").fetchone() == (20, 0)
        assert conn.execute("SELECT experiments, success_elapsed_mean_ms FROM scenario_summary "
                            "WHERE experiments > 0").fetchall() == [(1, None), (1, None)]
        assert slo.figure_values(conn, [done, stored], "elapsed_p99_ms") == {done: (attempt[done], None),
                                                                             stored: (attempt[stored], None)}
