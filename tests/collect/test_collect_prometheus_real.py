"""The Prometheus collector against a real Prometheus scraping the real app, HAProxy and etcd,
with the app's exporter stopped for 5 s in the middle of the window."""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from metrics_stack import PASSWORD, USER, MetricsStack, running_stack

from kubexp.collect import etcd_log, prometheus, queries
from kubexp.collect.prometheus import (
    CollectOptions,
    IncompleteMetricsError,
    PrometheusError,
    PrometheusInstance,
    PrometheusUnreachable,
)
from kubexp.platform.local.queries import LOCAL_QUERIES
from kubexp.processes import free_port
from kubexp.records import Collected, Window
from kubexp.store import attempts, db, ingest, migrations, suites
from kubexp.suite import load_suite

pytestmark = pytest.mark.slow

LOCAL = queries.render(LOCAL_QUERIES, {"namespace": "kubexp", "rate_window": "5s"})


@pytest.fixture(scope="module")
def stack() -> Iterator[MetricsStack]:
    state_dir = Path(tempfile.mkdtemp(prefix="kubexp-collect-"))
    try:
        with running_stack(state_dir) as running:
            yield running
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def span(stack: MetricsStack) -> int:
    return int((stack.end - stack.t0).total_seconds())


def only(series: list, name: str, **labels: str):
    found = [s for s in series if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name} {labels}: {[s.labels for s in found]}"
    return found[0]


def test_every_default_local_query_answers_from_the_real_exporters(stack: MetricsStack) -> None:
    collected = prometheus.query_all([stack.instance], LOCAL, stack.t0, stack.end, stack.t0)

    assert collected.empty == []
    assert {s.name for s in collected.series} == set(LOCAL)
    last = math.floor((stack.end - stack.t0).total_seconds())
    for series in collected.series:
        assert series.source == "prometheus:test"
        assert all(isinstance(t, int) and 0 <= t <= last for t, _ in series.points)
        assert all(math.isfinite(v) for _, v in series.points)
    assert only(collected.series, "app_requests_per_second_by_code", code="200").points
    assert only(collected.series, "etcd_has_leader").points[0][1] == 1.0
    # An idle etcd does no fsync: sum/count is 0/0 = NaN every second, dropped and counted.
    fsync = only(collected.series, "etcd_wal_fsync_mean_seconds")
    assert collected.non_finite[prometheus.series_key(fsync)] == last + 1 - len(fsync.points)


def test_exporter_gap_is_missing_seconds_and_lowers_completeness(stack: MetricsStack) -> None:
    series = prometheus.collect([stack.instance], LOCAL, stack.t0, stack.end, stack.t0)
    shares = prometheus.completeness(series, span(stack))

    memory = only(series, "app_resident_memory_bytes", replica=stack.app_replica)
    stopped = (stack.stopped_at - stack.t0).total_seconds()
    resumed = (stack.resumed_at - stack.t0).total_seconds()
    present = {t for t, _ in memory.points}
    # Seconds well inside the stop have no row at all (not a zero); either side they do.
    assert not present & set(range(math.ceil(stopped) + 1, math.floor(resumed)))
    assert {0, 1, 2, 3} <= present and {span(stack) - 2, span(stack) - 1} <= present
    assert all(value > 0 for _, value in memory.points)
    assert 0.4 <= shares[prometheus.series_key(memory)] <= 0.85
    # Prometheus itself kept answering: `up` of the app is 0 in the gap, etcd was never stopped.
    up = dict(only(series, "scrape_up", component="app").points)
    assert 0.0 in {up.get(t) for t in range(math.ceil(stopped) + 1, math.floor(resumed))}
    assert shares[prometheus.series_key(only(series, "etcd_has_leader"))] >= 0.85


def test_postcondition_names_the_incomplete_required_series(stack: MetricsStack) -> None:
    series = prometheus.collect([stack.instance], LOCAL, stack.t0, stack.end, stack.t0)

    with pytest.raises(IncompleteMetricsError) as failure:
        prometheus.check_completeness(series, ["app_resident_memory_bytes", "etcd_has_leader", "no_such_query"],
                                      span(stack), minimum=0.9)
    message = str(failure.value)
    assert 'app_resident_memory_bytes{replica="replica-1"} from prometheus:test covers' in message
    assert "'no_such_query' returned no series" in message
    assert "etcd_has_leader" not in message
    assert len(failure.value.problems) == 2
    shares = prometheus.check_completeness(series, ["etcd_has_leader"], span(stack), minimum=0.5)
    assert shares


def test_points_are_evaluated_at_t0_plus_whole_seconds(stack: MetricsStack) -> None:
    (clock,) = prometheus.collect([stack.instance], {"clock": "time()"}, stack.t0, stack.end, stack.t0)

    base = stack.t0.timestamp()
    assert [t for t, _ in clock.points] == list(range(0, math.floor((stack.end - stack.t0).total_seconds()) + 1))
    assert all(abs(value - base - t) < 0.002 for t, value in clock.points)


def test_chunked_window_equals_one_request(stack: MetricsStack) -> None:
    whole = prometheus.collect([stack.instance], LOCAL, stack.t0, stack.end, stack.t0)
    chunked = prometheus.collect([stack.instance], LOCAL, stack.t0, stack.end, stack.t0, CollectOptions(max_points=4))

    assert sorted(map(repr, chunked)) == sorted(map(repr, whole))


def test_nan_and_inf_are_dropped_and_counted(stack: MetricsStack) -> None:
    collected = prometheus.query_all([stack.instance], {"nan": "vector(0) / vector(0)", "inf": "vector(1) / vector(0)",
                                                        "one": "vector(1)"}, stack.t0, stack.end, stack.t0)
    by_name = {s.name: s for s in collected.series}
    seconds = math.floor((stack.end - stack.t0).total_seconds()) + 1

    assert by_name["nan"].points == [] and by_name["inf"].points == []
    assert collected.non_finite[prometheus.series_key(by_name["nan"])] == seconds
    assert collected.non_finite[prometheus.series_key(by_name["inf"])] == seconds
    assert len(by_name["one"].points) == seconds and prometheus.series_key(by_name["one"]) not in collected.non_finite


def test_query_with_many_series_is_capped_with_a_warning(stack: MetricsStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "kubexp.collect.prometheus")
    collected = prometheus.query_all([stack.instance], {"everything_etcd": '{job="etcd"}'}, stack.t0, stack.end,
                                     stack.t0, CollectOptions(max_series=25))

    assert len(collected.series) == 25
    returned = collected.capped["everything_etcd from prometheus:test"]
    assert returned > 100
    assert f"'everything_etcd' returned {returned} series; kept the first 25" in caplog.text


def test_several_instances_keep_their_own_source(stack: MetricsStack) -> None:
    second = PrometheusInstance("second", stack.instance.url, username=USER, password=PASSWORD)
    series = prometheus.collect([stack.instance, second], {"up": "up"}, stack.t0, stack.end, stack.t0)

    assert sorted(s.source for s in series) == ["prometheus:second"] * 3 + ["prometheus:test"] * 3


def test_unscraped_names_the_targets_without_a_successful_scrape_since_a_time(stack: MetricsStack) -> None:
    series = prometheus.collect([stack.instance], {"up": "up"}, stack.t0, stack.end, stack.t0)
    addresses = sorted(s.labels["instance"] for s in series)
    assert len(addresses) == 3

    assert prometheus.unscraped(stack.instance, addresses, stack.t0) == []
    assert prometheus.unscraped(stack.instance, [*addresses, "127.0.0.1:1"], stack.t0) == ["127.0.0.1:1"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert prometheus.unscraped(stack.instance, addresses, later) == addresses
    with pytest.raises(PrometheusUnreachable, match="did not list its targets"):
        prometheus.unscraped(PrometheusInstance("gone", f"http://127.0.0.1:{free_port()}"), addresses, stack.t0)


def test_credentials_from_an_airflow_connection(stack: MetricsStack, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": stack.instance.url, "login": USER, "password": PASSWORD}
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_PROM_TEST", json.dumps(conn))
    instance = PrometheusInstance.from_settings({"name": "conn", "conn_id": "kubexp_prom_test"})

    series = prometheus.collect([instance], {"up": "up"}, stack.t0, stack.end, stack.t0)
    assert len(series) == 3
    assert PASSWORD not in repr(instance)
    prometheus.check_ready(instance)


def test_wrong_password_is_an_error_without_the_secret(stack: MetricsStack) -> None:
    wrong = PrometheusInstance("test", stack.instance.url, username=USER, password="not-the-password")
    with pytest.raises(PrometheusError) as failure:
        prometheus.collect([wrong], {"up": "up"}, stack.t0, stack.end, stack.t0)
    message = str(failure.value)
    assert "Prometheus 'test'" in message and "query 'up'" in message and "HTTP 401" in message
    assert "credentials" in message and "not-the-password" not in message


def test_collecting_twice_replaces_rows_in_the_store(stack: MetricsStack, database_url: str, tmp_path: Path) -> None:
    migrations.upgrade(database_url)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "suite": "collect-store", "platform": "local", "repetitions": 1,
        "defaults": {"duration_s": span(stack)}, "matrix": {"workers": [1]}}))
    suite = load_suite(tmp_path / "s.yaml")
    with db.connect(database_url) as conn:
        suites.sync_suite(conn, suite)
        row = conn.execute("SELECT id::text FROM experiment").fetchone()
        assert row is not None
        experiment_id = row[0]
        attempt_id = attempts.open_attempt(conn, experiment_id, "run-1", 1, "test-host")
        counts = []
        for _ in range(2):
            series = prometheus.collect([stack.instance], LOCAL, stack.t0, stack.end, stack.t0)
            logs = etcd_log.LocalEtcdLog(stack.state_dir / "logs" / "etcd.log", "etcd").collect(
                Window(stack.t0, stack.t0 - timedelta(minutes=2), stack.end, tmp_path / "artifacts"))
            ingest.store_experiment_data(conn, experiment_id, attempt_id,
                                         Collected(series=series, events=logs.events, artifacts=logs.artifacts),
                                         t0=stack.t0)
            counts.append(stored_counts(conn, experiment_id))
        assert counts[0] == counts[1]
        assert counts[0]["metric_series"] == len(series) and counts[0]["platform_event"] >= 1
        assert counts[0]["metric_point"] == sum(len(s.points) for s in series)
        stored = conn.execute(
            "SELECT completeness FROM metric_series WHERE experiment_id = %s AND name = 'app_resident_memory_bytes'",
            (experiment_id,)).fetchone()
        assert stored is not None and 0.4 <= stored[0] <= 0.85  # the store's figure shows the exporter gap too
        election = conn.execute("SELECT t FROM platform_event WHERE experiment_id = %s AND kind = 'EtcdLeaderElected'",
                                (experiment_id,)).fetchone()
        assert election is not None and election[0] < 0  # etcd started before the load: negative t


def stored_counts(conn: psycopg.Connection, experiment_id: str) -> dict[str, int]:
    counts = {}
    for table in ("metric_series", "platform_event", "artifact"):
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE experiment_id = %s", (experiment_id,)).fetchone()
        counts[table] = row[0] if row else -1
    row = conn.execute("SELECT count(*) FROM metric_point p JOIN metric_series s ON s.id = p.series_id "
                       "WHERE s.experiment_id = %s", (experiment_id,)).fetchone()
    counts["metric_point"] = row[0] if row else -1
    return counts
