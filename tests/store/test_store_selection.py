"""Selection: the noisy-neighbour rule, its recorded seed, concurrency, cluster leases, stale attempts."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest
from store_fixtures import T0, load_frame

from kubexp.records import Collected
from kubexp.store import attempts, db, experiments, ingest, selection, suites
from kubexp.store.db import StoreError
from kubexp.suite import Suite


def run_to_finish(conn: psycopg.Connection, chosen: selection.Selection, run_id: str) -> int:
    attempt_id = attempts.open_attempt(conn, chosen.experiment_id, run_id, 1, "host")
    ingest.store_experiment_data(conn, chosen.experiment_id, attempt_id, Collected(load=load_frame()), t0=T0)
    experiments.finish_experiment(conn, chosen.experiment_id, attempt_id)
    return attempt_id


def test_next_experiment_comes_from_a_scenario_with_the_fewest_finished(conn: psycopg.Connection, suite: Suite) -> None:
    finished: Counter[str] = Counter()
    for n in range(6):
        chosen = selection.select_next_experiment(conn, suite, "dag-run")
        assert chosen is not None
        assert finished[chosen.scenario_id] == min(finished[s.id] for s in suite.scenarios())
        assert chosen.repetition == finished[chosen.scenario_id] + 1
        assert chosen.params["workers"] in (1, 2, 3) and chosen.suite == "mini"
        run_to_finish(conn, chosen, f"run-{n}")
        finished[chosen.scenario_id] += 1
    assert set(finished.values()) == {2}
    assert selection.select_next_experiment(conn, suite, "dag-run") is None


def test_ties_are_broken_by_a_recorded_seed_that_replays(conn: psycopg.Connection, suite: Suite) -> None:
    picks = []
    for n in range(3):
        chosen = selection.select_next_experiment(conn, suite, "dag-run")
        assert chosen is not None
        picks.append(chosen)
        run_to_finish(conn, chosen, f"run-{n}")
    logged = conn.execute(
        "SELECT choice_seed, tied_scenarios, scenario_id, fewest_finished FROM selection ORDER BY id"
    ).fetchall()
    assert [row[0] for row in logged] == [selection.choice_seed(suite.seed, n) for n in range(3)]
    for (seed, tied, chosen_id, fewest), pick in zip(logged, picks, strict=True):
        import random

        assert random.Random(seed).choice(tied) == chosen_id == pick.scenario_id
        assert fewest == 0 and pick.choice_seed == seed
    assert len(logged[0][1]) == 3 and len(logged[2][1]) == 1  # the tie shrinks as scenarios finish
    assert len({pick.scenario_id for pick in picks}) == 3


def test_selection_loads_an_unloaded_or_changed_suite(conn: psycopg.Connection, suite: Suite) -> None:
    assert suites.stored_fingerprint(conn, "mini") is None
    assert selection.select_next_experiment(conn, suite, "h") is not None
    assert conn.execute("SELECT count(*) FROM experiment").fetchone() == (6,)


def test_two_concurrent_selectors_never_get_the_same_experiment(store_url: str, suite: Suite) -> None:
    with db.connect(store_url) as setup:
        suites.sync_suite(setup, suite)
    got: dict[str, list[str]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def select_all(holder: str) -> None:
        with db.connect(store_url) as own:
            barrier.wait()
            while (chosen := selection.select_next_experiment(own, suite, holder)) is not None:
                got[holder].append(chosen.experiment_id)

    threads = [threading.Thread(target=select_all, args=(holder,)) for holder in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = got["a"] + got["b"]
    assert len(everything) == 6 and len(set(everything)) == 6


def test_a_row_locked_by_another_transaction_is_skipped(store_url: str, suite: Suite) -> None:
    with db.connect(store_url) as first, db.connect(store_url) as second:
        suites.sync_suite(first, suite)
        with first.transaction():
            held = first.execute("SELECT id::text FROM experiment ORDER BY id LIMIT 5 FOR UPDATE").fetchall()
            chosen = selection.select_next_experiment(second, suite, "other")
            assert chosen is not None and chosen.experiment_id not in {row[0] for row in held}
            assert selection.select_next_experiment(second, suite, "other") is None


def age(conn: psycopg.Connection, table: str, column: str, seconds: int) -> None:
    """Let time pass for a row: move its timestamp into the past (no sleeping on a busy machine)."""
    conn.execute(f"UPDATE {table} SET {column} = {column} - make_interval(secs => %s)", (seconds,))


def test_cluster_lease_excludes_others_until_released_or_expired(conn: psycopg.Connection) -> None:
    assert selection.try_lock_cluster(conn, "c1", "run-a", lease_s=60)
    assert not selection.try_lock_cluster(conn, "c1", "run-b", lease_s=60)
    assert selection.try_lock_cluster(conn, "c2", "run-b", lease_s=60)  # other clusters are independent
    assert selection.try_lock_cluster(conn, "c1", "run-a", lease_s=60)  # renewal by the holder
    selection.release_cluster(conn, "c1", "run-b")  # not the holder: nothing happens
    assert selection.cluster_lock_holder(conn, "c1") == ("run-a", True)
    selection.release_cluster(conn, "c1", "run-a")
    assert selection.cluster_lock_holder(conn, "c1") is None
    assert selection.try_lock_cluster(conn, "c1", "run-b", lease_s=60)
    assert not selection.try_lock_cluster(conn, "c1", "run-c", lease_s=60)
    age(conn, "cluster_lock", "expires_at", 61)  # run-b "died": its lease ran out
    assert selection.cluster_lock_holder(conn, "c1") == ("run-b", False)
    assert selection.try_lock_cluster(conn, "c1", "run-c", lease_s=60)
    assert selection.cluster_lock_holder(conn, "c1") == ("run-c", True)
    assert not selection.try_lock_cluster(conn, "c1", "run-b", lease_s=60)  # the old holder lost it


def test_a_real_lease_runs_out(conn: psycopg.Connection) -> None:
    assert selection.try_lock_cluster(conn, "c1", "run-a", lease_s=0.1)
    time.sleep(0.3)
    assert selection.try_lock_cluster(conn, "c1", "run-b", lease_s=60)


def test_two_connections_racing_for_a_free_cluster_get_one_lease(store_url: str) -> None:
    winners = []
    barrier = threading.Barrier(4)

    def race(holder: str) -> None:
        with db.connect(store_url) as own:
            barrier.wait()
            if selection.try_lock_cluster(own, "shared", holder, lease_s=60):
                winners.append(holder)

    threads = [threading.Thread(target=race, args=(f"run-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_stale_attempts_are_reclaimed_and_their_experiment_offered_again(
    conn: psycopg.Connection, suite: Suite
) -> None:
    chosen = selection.select_next_experiment(conn, suite, "run-dead")
    assert chosen is not None
    dead = attempts.open_attempt(conn, chosen.experiment_id, "run-dead", 1, "host")
    claimed = selection.select_next_experiment(conn, suite, "run-2", stale_after_s=600)
    assert claimed is not None and claimed.experiment_id != chosen.experiment_id  # claimed ones are skipped
    age(conn, "attempt", "heartbeat_at", 601)
    age(conn, "experiment", "claimed_at", 601)  # run-2 selected but never opened an attempt
    offered = []
    while (next_one := selection.select_next_experiment(conn, suite, "run-3", stale_after_s=600)) is not None:
        offered.append(next_one.experiment_id)
    assert chosen.experiment_id in offered and claimed.experiment_id in offered and len(offered) == 6
    row = conn.execute("SELECT outcome, error, ended_at IS NOT NULL FROM attempt WHERE id = %s", (dead,)).fetchone()
    assert row is not None and row[0] == "abandoned" and "reclaimed" in row[1] and row[2]
    with pytest.raises(StoreError, match="not running any more"):
        attempts.heartbeat(conn, dead)
    with pytest.raises(StoreError, match="ended as abandoned"):
        ingest.store_experiment_data(conn, chosen.experiment_id, dead, Collected(load=load_frame()), t0=T0)


def test_heartbeats_keep_an_attempt_alive(conn: psycopg.Connection, suite: Suite) -> None:
    chosen = selection.select_next_experiment(conn, suite, "run-1")
    assert chosen is not None
    alive = attempts.open_attempt(conn, chosen.experiment_id, "run-1", 1, "host")
    age(conn, "attempt", "heartbeat_at", 601)
    age(conn, "experiment", "claimed_at", 601)
    attempts.heartbeat(conn, alive)
    assert attempts.reclaim_stale(conn, "mini", stale_after_s=600) == []
    assert conn.execute("SELECT claimed_by FROM experiment WHERE id = %s", (chosen.experiment_id,)).fetchone() == (
        "run-1",)
    age(conn, "attempt", "heartbeat_at", 601)
    age(conn, "experiment", "claimed_at", 601)
    assert attempts.reclaim_stale(conn, "mini", stale_after_s=600) == [alive]
    assert conn.execute("SELECT claimed_by FROM experiment WHERE id = %s", (chosen.experiment_id,)).fetchone() == (
        None,)


def test_a_forced_claim_bypasses_balancing_and_refuses_what_is_not_free(conn: psycopg.Connection,
                                                                        suite: Suite) -> None:
    suites.sync_suite(conn, suite)
    last = suite.scenarios()[-1].id

    def claim(holder: str, **forced: str | None) -> selection.Selection:
        return selection.claim_experiment(conn, suite, holder, scenario_id=forced.get("scenario_id"),
                                          experiment_id=forced.get("experiment_id"), stale_after_s=3600)

    first = claim("run-1", scenario_id=last)
    run_to_finish(conn, first, "run-1")
    second = claim("run-2", scenario_id=last)  # fewest-finished would pick another scenario
    assert (second.scenario_id, second.repetition) == (last, 2)
    assert conn.execute("SELECT count(*) FROM selection").fetchone() == (0,)
    with pytest.raises(selection.SelectionError, match=f"experiment {first.experiment_id} is already finished"):
        claim("run-3", experiment_id=first.experiment_id)
    with pytest.raises(selection.SelectionError, match="is claimed by run run-2"):
        claim("run-3", experiment_id=second.experiment_id)
    with pytest.raises(selection.SelectionError, match="scenario 0123456789abcdef is not in suite mini"):
        claim("run-3", scenario_id="0123456789abcdef")


def test_selection_with_a_lease_holds_the_cluster_against_other_holders(conn: psycopg.Connection,
                                                                         suite: Suite) -> None:
    lease = ("local:/some/run/folder", 60)
    first = selection.select_next_experiment(conn, suite, "run-a", lease=lease)
    assert first is not None and selection.cluster_lock_holder(conn, lease[0]) == ("run-a", True)
    with pytest.raises(selection.ClusterBusy, match=f"cluster '{suite.cluster}' \\({lease[0]}\\) is held by run-a"):
        selection.select_next_experiment(conn, suite, "run-b", lease=lease)
    assert selection.select_next_experiment(conn, suite, "run-a", lease=lease) is not None  # the holder renews
    selection.release_cluster(conn, lease[0], "run-a")
    assert selection.select_next_experiment(conn, suite, "run-b", lease=lease) is not None
