"""Ingest: COPY round trip, replacement per kind in one transaction, finishing, summaries, status."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from store_fixtures import T0, load_frame, make_suite

from kubexp.records import LOAD_SECOND_COLUMNS, Artifact, Collected, MetricSeries, PlatformEvent
from kubexp.store import attempts, experiments, ingest, status, suites
from kubexp.store.db import StoreError
from kubexp.suite import Suite

SHA = "a" * 64


def first_experiment(conn: psycopg.Connection, suite: Suite, scenario: int = 0, repetition: int = 1) -> str:
    suites.sync_suite(conn, suite)
    row = conn.execute(
        "SELECT id::text FROM experiment WHERE scenario_id = %s AND repetition = %s",
        (suite.scenarios()[scenario].id, repetition),
    ).fetchone()
    assert row is not None
    return str(row[0])


def event(t: int, kind: str = "OOMKilled") -> PlatformEvent:
    return PlatformEvent(t=t, at=T0 + timedelta(seconds=t), source="local-supervisor", kind=kind, obj="replica-1")


def table_counts(conn: psycopg.Connection, experiment_id: str) -> dict[str, int]:
    counts = {}
    for table in ("load_second", "metric_series", "platform_event", "artifact"):
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE experiment_id = %s", (experiment_id,)).fetchone()
        counts[table] = row[0] if row else 0
    row = conn.execute(
        "SELECT count(*) FROM metric_point p JOIN metric_series s ON s.id = p.series_id WHERE s.experiment_id = %s",
        (experiment_id,),
    ).fetchone()
    counts["metric_point"] = row[0] if row else 0
    return counts


def test_load_rows_round_trip_with_nulls(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    frame = load_frame(seconds=10)
    frame.loc[3, ["requests", "successes", "failures", "failures_5xx", "bytes"]] = 0
    for column in LOAD_SECOND_COLUMNS:
        if column.endswith("_ms"):
            frame.loc[3, column] = np.nan
    frame.loc[5, "elapsed_p99_ms"] = 123.25
    frame["threads"] = frame["threads"].astype(float)
    frame.loc[7, "threads"] = np.nan  # unknown, not zero
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=frame), t0=T0)
    columns = ", ".join(LOAD_SECOND_COLUMNS)
    rows = conn.execute(f"SELECT {columns} FROM load_second WHERE experiment_id = %s ORDER BY t",
                        (experiment_id,)).fetchall()
    assert len(rows) == 10
    for stored, (_, expected) in zip(rows, frame.iterrows(), strict=True):
        for column, value in zip(LOAD_SECOND_COLUMNS, stored, strict=True):
            if np.isnan(expected[column]):
                assert value is None, column
            else:
                assert value == expected[column], column
    assert conn.execute("SELECT load_started_at FROM attempt WHERE id = %s", (attempt_id,)).fetchone() == (T0,)


def test_storing_again_replaces_each_kind_given_and_keeps_the_others(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    series = [MetricSeries("prometheus:local", "cpu", {"pod": "a"}, [(t, 0.5) for t in range(10)])]
    everything = dict(load=load_frame(), series=series, events=[event(2)],
                      artifacts=[Artifact("jtl", "/x/load.jtl.gz", SHA, 10)])
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(**everything), t0=T0)
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(**everything), t0=T0)
    assert table_counts(conn, experiment_id) == {
        "load_second": 10, "metric_series": 1, "platform_event": 1, "artifact": 1, "metric_point": 10}
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=load_frame(seconds=4), events=[]),
                                 t0=T0)
    assert table_counts(conn, experiment_id) == {
        "load_second": 4, "metric_series": 1, "platform_event": 0, "artifact": 1, "metric_point": 10}


def test_a_failing_store_changes_nothing(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=load_frame(seconds=10)), t0=T0)
    twice = MetricSeries("prometheus:local", "cpu", {}, [(1, 1.0), (1, 2.0)])
    with pytest.raises(StoreError, match="several points for the same second"):
        ingest.store_experiment_data(conn, experiment_id, attempt_id,
                                     Collected(load=load_frame(seconds=3), series=[twice]), t0=T0)
    assert table_counts(conn, experiment_id)["load_second"] == 10  # the new load rows were rolled back
    bad = load_frame(seconds=3)
    bad.loc[1, "failures"] = 7  # successes + failures no longer equals requests
    with pytest.raises(Exception, match="check constraint"):
        ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=bad), t0=T0)
    assert table_counts(conn, experiment_id)["load_second"] == 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["threads"]), "lacks columns threads"),
        (lambda f: f.assign(t=0), "duplicate seconds"),
        (lambda f: f.assign(requests=f["requests"] + 0.5), "fractional values"),
    ],
)
def test_malformed_load_frames_are_refused(conn: psycopg.Connection, suite: Suite, change, message: str) -> None:
    experiment_id = first_experiment(conn, suite)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    with pytest.raises(StoreError, match=message):
        ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=change(load_frame())), t0=T0)


def test_metric_completeness_counts_seconds_of_the_load_and_drops_nan(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)  # duration_s = 10
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    points = [(t, float("nan") if t == 4 else 1.0) for t in range(-2, 8)]  # 0..7 minus NaN at 4 = 7 of 10
    ingest.store_experiment_data(conn, experiment_id, attempt_id,
                                 Collected(series=[MetricSeries("prometheus:local", "rps", {"job": "app"}, points)]),
                                 t0=T0)
    row = conn.execute("SELECT points, completeness, labels FROM metric_series").fetchone()
    assert row == (9, pytest.approx(0.7), {"job": "app"})


def test_refusals_protect_the_ledger(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    other_experiment = first_experiment(conn, suite, scenario=1)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    with pytest.raises(StoreError, match="timezone-aware"):
        ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=load_frame()),
                                     t0=T0.replace(tzinfo=None))
    with pytest.raises(StoreError, match="not an attempt of experiment"):
        ingest.store_experiment_data(conn, other_experiment, attempt_id, Collected(load=load_frame()), t0=T0)
    with pytest.raises(StoreError, match="stored no load rows"):
        experiments.finish_experiment(conn, experiment_id, attempt_id)
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=load_frame()), t0=T0)
    experiments.finish_experiment(conn, experiment_id, attempt_id)
    experiments.finish_experiment(conn, experiment_id, attempt_id)  # again: nothing happens
    with pytest.raises(StoreError, match="is finished; its data is final"):
        ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=load_frame()), t0=T0)
    with pytest.raises(StoreError, match="already finished"):
        attempts.open_attempt(conn, experiment_id, "run-2", 1, "host")
    assert conn.execute("SELECT outcome FROM attempt WHERE id = %s", (attempt_id,)).fetchone() == ("succeeded",)
    attempts.close_attempt(conn, attempt_id, "failed", "teardown after finish")  # first outcome stays
    assert conn.execute("SELECT outcome FROM attempt WHERE id = %s", (attempt_id,)).fetchone() == ("succeeded",)


def test_a_later_attempt_replaces_a_failed_one_without_mixing(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    failed = attempts.open_attempt(conn, experiment_id, "run-1", 1, "host-a")
    ingest.store_experiment_data(conn, experiment_id, failed,
                                 Collected(load=load_frame(successes=999), events=[event(1)],
                                           artifacts=[Artifact("log", "/x/1.log", SHA, 1)]), t0=T0)
    attempts.close_attempt(conn, failed, "failed", "collect: Prometheus unreachable")
    with pytest.raises(StoreError, match="ended as failed"):
        experiments.finish_experiment(conn, experiment_id, failed)
    second = attempts.open_attempt(conn, experiment_id, "run-2", 1, "host-b")
    assert attempts.open_attempt(conn, experiment_id, "run-2", 1, "host-b") == second  # idempotent
    ingest.store_experiment_data(conn, experiment_id, second,
                                 Collected(load=load_frame(successes=50),
                                           artifacts=[Artifact("log", "/x/2.log", SHA, 2)]), t0=T0)
    experiments.finish_experiment(conn, experiment_id, second)
    assert set(conn.execute("SELECT DISTINCT attempt_id FROM load_second").fetchall()) == {(second,)}
    assert conn.execute("SELECT count(*) FROM platform_event").fetchone() == (0,)  # the failed try's event is gone
    assert conn.execute("SELECT count(*) FROM artifact").fetchone() == (2,)  # evidence of both tries is kept
    row = conn.execute("SELECT attempt_id, successes_per_s_mean FROM experiment_summary").fetchone()
    assert row == (second, 50)


def test_provenance_merges_facts(conn: psycopg.Connection, suite: Suite) -> None:
    experiment_id = first_experiment(conn, suite)
    attempt_id = attempts.open_attempt(conn, experiment_id, "run", 1, "host")
    attempts.record_provenance(conn, attempt_id, {"framework": {"commit": "abc", "dirty": False}, "seed": 7})
    attempts.record_provenance(conn, attempt_id, {"app": {"commit": "def"}, "at": T0})
    facts = attempts.provenance(conn, attempt_id)
    assert facts["framework"] == {"commit": "abc", "dirty": False} and facts["app"] == {"commit": "def"}
    assert facts["seed"] == 7 and facts["at"].startswith("2024-05-01")
    with pytest.raises(StoreError, match="does not exist"):
        attempts.record_provenance(conn, 999999, {})


def finish_with(conn: psycopg.Connection, experiment_id: str, run: str, frame) -> None:
    attempt_id = attempts.open_attempt(conn, experiment_id, run, 1, "host")
    ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=frame), t0=T0)
    experiments.finish_experiment(conn, experiment_id, attempt_id)


def test_summaries_use_the_steady_state_window_and_count_missing_seconds_as_zero(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    suite = make_suite(tmp_path, workers=[1, 2], analysis={"warmup_s": 2, "cooldown_s": 1})  # window 2 <= t < 9
    one = first_experiment(conn, suite, repetition=1)
    two = first_experiment(conn, suite, repetition=2)
    frame = load_frame(seconds=10)
    frame["successes"] = frame["requests"] = np.arange(10) * 10  # 0, 10, ..., 90
    frame[["failures", "failures_5xx"]] = 0
    finish_with(conn, one, "run-1", frame)
    finish_with(conn, two, "run-2", frame[frame["t"] != 5])  # second 5 missing: zero successes
    summary = {row[0]: row[1:] for row in conn.execute(
        "SELECT experiment_id::text, seconds, seconds_with_load, successes, successes_per_s_mean, "
        "successes_per_s_median, successes_per_s_std, workers FROM experiment_summary")}
    window = np.arange(2, 9) * 10.0
    assert summary[one] == (7, 7, window.sum(), pytest.approx(window.mean()), pytest.approx(np.median(window)),
                            pytest.approx(window.std(ddof=1)), 1)
    gap = np.where(np.arange(2, 9) == 5, 0, window)
    assert summary[two][:4] == (7, 6, gap.sum(), pytest.approx(gap.mean()))
    row = conn.execute(
        "SELECT experiments, seconds, successes_per_s_mean, successes_per_s_std, experiment_mean_std "
        "FROM scenario_summary WHERE workers = 1").fetchone()
    pooled = np.concatenate([window, gap])
    assert row == (2, 14, pytest.approx(pooled.mean()), pytest.approx(pooled.std(ddof=1)),
                   pytest.approx(np.std([window.mean(), gap.mean()], ddof=1)))
    assert conn.execute("SELECT experiments FROM scenario_summary WHERE workers = 2").fetchone() == (0,)
    # a new window recomputes the finished experiments' aggregates
    suites.sync_suite(conn, make_suite(tmp_path, workers=[1, 2], analysis={"warmup_s": 0, "cooldown_s": 0}))
    assert conn.execute("SELECT seconds, successes FROM experiment_summary WHERE experiment_id = %s",
                        (one,)).fetchone() == (10, 450)


def test_suite_status_counts_plan_progress_and_failures(conn: psycopg.Connection, suite: Suite) -> None:
    done = first_experiment(conn, suite)
    finish_with(conn, done, "run-1", load_frame())
    failing = first_experiment(conn, suite, scenario=1)
    attempts.close_attempt(conn, attempts.open_attempt(conn, failing, "run-2", 1, "h"), "failed", "boom")
    running = first_experiment(conn, suite, scenario=2)
    attempts.open_attempt(conn, running, "run-3", 1, "h")
    state = status.suite_status(conn, "mini")
    assert {key: state[key] for key in ("scenarios", "experiments", "finished", "unfinished", "running",
                                        "failed_attempts")} == {
        "scenarios": 3, "experiments": 6, "finished": 1, "unfinished": 5, "running": 1, "failed_attempts": 1}
    per = state["per_scenario"]
    assert [row["index"] for row in per] == [0, 1, 2]
    assert (per[0]["finished"], per[1]["failed_attempts"], per[2]["running"]) == (1, 1, 1)
    assert per[0]["params"]["workers"] == 1
    with pytest.raises(StoreError, match="not in the store"):
        status.suite_status(conn, "absent")
