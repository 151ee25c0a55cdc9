"""Loading suites: idempotent, only missing experiments added, scenarios shared between suites."""

from __future__ import annotations

from pathlib import Path

import psycopg
from store_fixtures import make_suite

from kubexp.store import suites
from kubexp.suite import Suite


def counts(conn: psycopg.Connection, suite_name: str) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM scenario), "
        "(SELECT count(*) FROM suite_scenario WHERE suite = %s AND active), "
        "(SELECT count(*) FROM experiment WHERE suite = %s)",
        (suite_name, suite_name),
    ).fetchone()
    assert row is not None
    return row


def test_loading_twice_changes_nothing(conn: psycopg.Connection, suite: Suite) -> None:
    assert suites.sync_suite(conn, suite) == (3, 6)
    assert suites.sync_suite(conn, suite) == (0, 0)
    assert counts(conn, "mini") == (3, 3, 6)
    stored = conn.execute("SELECT params FROM scenario WHERE id = %s", (suite.scenarios()[0].id,)).fetchone()
    assert stored is not None and stored[0] == suite.scenarios()[0].params


def test_more_repetitions_and_matrix_values_add_only_what_is_missing(
    conn: psycopg.Connection, suite: Suite, tmp_path: Path
) -> None:
    suites.sync_suite(conn, suite)
    before = {row[0] for row in conn.execute("SELECT id FROM experiment")}
    assert suites.sync_suite(conn, make_suite(tmp_path, repetitions=3)) == (0, 3)
    assert suites.sync_suite(conn, make_suite(tmp_path, workers=[1, 2, 3, 4], repetitions=3)) == (1, 3)
    after = {row[0] for row in conn.execute("SELECT id FROM experiment")}
    assert before < after and len(after) == 12
    # dropping a value keeps its experiments but takes the scenario out of the plan
    assert suites.sync_suite(conn, make_suite(tmp_path, workers=[1, 2], repetitions=3)) == (0, 0)
    assert counts(conn, "mini") == (4, 2, 12)


def test_the_same_parameters_in_two_suites_share_one_scenario(
    conn: psycopg.Connection, suite: Suite, tmp_path: Path
) -> None:
    other = make_suite(tmp_path, name="other", workers=[3, 9], repetitions=1)
    suites.sync_suite(conn, suite)
    assert suites.sync_suite(conn, other) == (2, 2)
    assert conn.execute("SELECT count(*) FROM scenario").fetchone() == (4,)
    shared = {s.id for s in suite.scenarios()} & {s.id for s in other.scenarios()}
    assert len(shared) == 1
    rows = conn.execute("SELECT suite FROM experiment WHERE scenario_id = %s ORDER BY suite", list(shared)).fetchall()
    assert [row[0] for row in rows] == ["mini", "mini", "other"]  # repetitions are planned per suite


def test_fingerprint_follows_the_plan(conn: psycopg.Connection, suite: Suite, tmp_path: Path) -> None:
    suites.sync_suite(conn, suite)
    assert suites.stored_fingerprint(conn, "mini") == suites.fingerprint(suite)
    assert suites.fingerprint(make_suite(tmp_path, repetitions=5)) != suites.fingerprint(suite)
    assert suites.stored_fingerprint(conn, "absent") is None
