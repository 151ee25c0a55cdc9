"""Which experiment runs next, and on which cluster nobody else runs one meanwhile.

The paper's noisy-neighbour rule: an unfinished experiment of a scenario with the fewest finished
experiments, ties broken by a seeded random choice. The seed of the n-th selection of a suite is
derived from the suite's seed and n, and every selection is logged with its seed and the tie it
broke, so the interleaving can be replayed.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import psycopg

from kubexp.store import attempts, suites
from kubexp.store.db import StoreError
from kubexp.suite import Suite

log = logging.getLogger(__name__)

# A claim or running attempt without a sign of life for this long after the longest scenario's
# duration is taken as dead (its run crashed) and is reclaimed.
STALE_MARGIN_S = 3600
# An experiment is planned while its repetition is within the suite's repetitions (the parameter) plus its
# scenario's extra repetitions (kubexp verdict|compare --until-decided).
PLANNED = ("repetition <= %s + (SELECT ss.extra_repetitions FROM suite_scenario ss "
           "WHERE ss.suite = experiment.suite AND ss.scenario_id = experiment.scenario_id)")


class SelectionError(StoreError):
    """A forced choice names no free experiment of the suite (the message says why)."""


class ClusterBusy(SelectionError):
    """Another holder's lease on the cluster is valid."""


@dataclass(frozen=True)
class Selection:
    experiment_id: str
    scenario_id: str
    repetition: int
    params: dict[str, Any]
    choice_seed: int
    suite: str = ""
    scenario_index: int = 0
    fewest_finished: int = 0
    tied_scenarios: tuple[str, ...] = ()


def try_lock_cluster(conn: psycopg.Connection, cluster: str, holder: str, lease_s: float) -> bool:
    """Take (or renew, for the same holder) the cluster's lease; an expired lease is taken over."""
    with conn.transaction():
        current = conn.execute(
            "SELECT holder, expires_at < now() AS expired, expires_at FROM cluster_lock WHERE cluster = %s FOR UPDATE",
            (cluster,),
        ).fetchone()
        if current is None:
            inserted = conn.execute(
                "INSERT INTO cluster_lock (cluster, holder, expires_at) "
                "VALUES (%s, %s, now() + make_interval(secs => %s)) ON CONFLICT (cluster) DO NOTHING",
                (cluster, holder, lease_s),
            ).rowcount
            return inserted == 1
        previous, expired, expires_at = current
        if previous != holder and not expired:
            return False
        if previous != holder:
            log.warning("cluster %s: lease of %s expired at %s; taken over by %s",
                        cluster, previous, expires_at, holder)
        conn.execute(
            "UPDATE cluster_lock SET holder = %s, expires_at = now() + make_interval(secs => %s), "
            "acquired_at = CASE WHEN holder = %s THEN acquired_at ELSE now() END WHERE cluster = %s",
            (holder, lease_s, holder, cluster),
        )
        return True


def release_cluster(conn: psycopg.Connection, cluster: str, holder: str) -> None:
    """Give the lease back; does nothing if another holder has taken it over meanwhile."""
    released = conn.execute(
        "DELETE FROM cluster_lock WHERE cluster = %s AND holder = %s", (cluster, holder)
    ).rowcount
    if not released:
        log.warning("cluster %s: %s does not hold the lease (expired and taken over?); nothing released",
                    cluster, holder)


def cluster_lock_holder(conn: psycopg.Connection, cluster: str) -> tuple[str, bool] | None:
    """(holder, still valid) of the cluster's lease, or None when nobody holds it."""
    row = conn.execute(
        "SELECT holder, expires_at >= now() FROM cluster_lock WHERE cluster = %s", (cluster,)
    ).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def choice_seed(suite_seed: int, selection_number: int) -> int:
    """The seed of a suite's n-th selection (0-based): stable across machines and Python versions."""
    digest = hashlib.sha256(f"{suite_seed}:{selection_number}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def select_next_experiment(
    conn: psycopg.Connection, suite: Suite, holder: str, *, stale_after_s: float | None = None,
    lease: tuple[str, float] | None = None,
) -> Selection | None:
    """Claim the next experiment of the suite for `holder`; None when no unfinished experiment is free.

    With `lease` (key, seconds), first takes (or renews) that cluster lease for `holder` in the same
    transaction, and raises ClusterBusy while another holder's lease is valid: one experiment per
    target, whatever suite or trigger. Loads the suite first if the store's copy differs from the
    file, and reclaims stale attempts (default timeout: the longest scenario duration +
    STALE_MARGIN_S). Concurrent selectors are serialised per suite and skip rows another
    transaction holds, so none get the same experiment.
    """
    scenarios = suite.scenarios()
    by_id = {scenario.id: scenario for scenario in scenarios}
    if stale_after_s is None:
        stale_after_s = max(s.params["duration_s"] for s in scenarios) + STALE_MARGIN_S
    with conn.transaction():
        if lease is not None and not try_lock_cluster(conn, lease[0], holder, lease[1]):
            busy = cluster_lock_holder(conn, lease[0])
            raise ClusterBusy(f"cluster {suite.cluster!r} ({lease[0]}) is held by "
                              f"{busy[0] if busy else 'another run'}; one experiment runs on a target at a "
                              f"time: wait for it (its lease expires if its holder died)")
        suites.lock_suite(conn, suite.name)
        if suites.stored_fingerprint(conn, suite.name) != suites.fingerprint(suite, scenarios):
            suites.sync_suite(conn, suite)
        attempts.reclaim_stale(conn, suite.name, stale_after_s)
        free = conn.execute(
            f"""
            SELECT id::text, scenario_id, repetition FROM experiment
            WHERE suite = %s AND scenario_id = ANY (%s) AND {PLANNED}
              AND status = 'unfinished' AND claimed_by IS NULL
            ORDER BY repetition
            FOR UPDATE SKIP LOCKED
            """,
            (suite.name, list(by_id), suite.repetitions),
        ).fetchall()
        if not free:
            return None
        finished: dict[str, int] = dict(conn.execute(
            f"""
            SELECT scenario_id, count(*) FROM experiment
            WHERE suite = %s AND scenario_id = ANY (%s) AND status = 'finished'
              AND {PLANNED}
            GROUP BY scenario_id
            """,
            (suite.name, list(by_id), suite.repetitions),
        ).fetchall())
        first_free: dict[str, tuple[str, int]] = {}
        for experiment_id, scenario_id, repetition in free:
            first_free.setdefault(scenario_id, (experiment_id, repetition))
        fewest = min(finished.get(scenario_id, 0) for scenario_id in first_free)
        tied = sorted((s for s in first_free if finished.get(s, 0) == fewest), key=lambda s: by_id[s].index)
        (count,) = conn.execute("SELECT count(*) FROM selection WHERE suite = %s", (suite.name,)).fetchone() or (0,)
        seed = choice_seed(suite.seed, int(count))
        chosen = random.Random(seed).choice(tied)
        experiment_id, repetition = first_free[chosen]
        conn.execute(
            "UPDATE experiment SET claimed_by = %s, claimed_at = now() WHERE id = %s", (holder, experiment_id)
        )
        conn.execute(
            "INSERT INTO selection (suite, holder, experiment_id, scenario_id, choice_seed, fewest_finished, "
            "tied_scenarios) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (suite.name, holder, experiment_id, chosen, seed, fewest, tied),
        )
    scenario = by_id[chosen]
    log.info("selected experiment %s (scenario %s #%d, repetition %d; %d tied with %d finished; seed %d)",
             experiment_id, chosen, scenario.index, repetition, len(tied), fewest, seed)
    return Selection(
        experiment_id=experiment_id, scenario_id=chosen, repetition=repetition, params=dict(scenario.params),
        choice_seed=seed, suite=suite.name, scenario_index=scenario.index, fewest_finished=fewest,
        tied_scenarios=tuple(tied),
    )


def resumed_claim(conn: psycopg.Connection, suite: Suite, holder: str) -> Selection | None:
    """The unfinished experiment `holder` claimed already: a run works on one experiment, so a retried
    select whose first try was killed after claiming takes it up again."""
    by_id = {scenario.id: scenario for scenario in suite.scenarios()}
    row = conn.execute(
        "SELECT e.id::text, e.scenario_id, e.repetition, s.choice_seed, s.fewest_finished, s.tied_scenarios "
        "FROM experiment e LEFT JOIN LATERAL (SELECT * FROM selection WHERE experiment_id = e.id AND holder = %s "
        "ORDER BY id DESC LIMIT 1) s ON true "
        "WHERE e.suite = %s AND e.claimed_by = %s AND e.status = 'unfinished' AND e.scenario_id = ANY (%s) LIMIT 1",
        (holder, suite.name, holder, list(by_id)),
    ).fetchone()
    if row is None:
        return None
    experiment_id, scenario_id, repetition, seed, fewest, tied = row
    scenario = by_id[scenario_id]
    log.info("%s resumes its claim on experiment %s (scenario %s, repetition %d)", holder, experiment_id,
             scenario_id, repetition)
    return Selection(experiment_id=experiment_id, scenario_id=scenario_id, repetition=repetition,
                     params=dict(scenario.params), choice_seed=int(seed or 0), suite=suite.name,
                     scenario_index=scenario.index, fewest_finished=int(fewest or 0), tied_scenarios=tuple(tied or ()))


def claim_experiment(conn: psycopg.Connection, suite: Suite, holder: str, *, scenario_id: str | None,
                     experiment_id: str | None, stale_after_s: float) -> Selection:
    """Claim the experiment a user forced (by id, or the first free one of a scenario) for `holder`.

    Bypasses the balancing rule and is not logged in `selection` (the caller records it with the
    attempt). Refuses, naming the id, what is not an unfinished, unclaimed experiment of this suite."""
    by_id = {scenario.id: scenario for scenario in suite.scenarios()}
    attempts.reclaim_stale(conn, suite.name, stale_after_s)
    if scenario_id is not None and scenario_id not in by_id:
        raise SelectionError(f"scenario {scenario_id} is not in suite {suite.name} ({suite.path}); "
                             f"pick one from the trigger form's list")
    row = conn.execute(
        f"""
        SELECT id::text, scenario_id, repetition, status, claimed_by FROM experiment
        WHERE suite = %s AND (%s::uuid IS NULL OR id = %s::uuid) AND (%s::text IS NULL OR scenario_id = %s)
          AND {PLANNED}
        ORDER BY status = 'unfinished' DESC, claimed_by IS NULL DESC, repetition
        LIMIT 1 FOR UPDATE
        """,
        (suite.name, experiment_id, experiment_id, scenario_id, scenario_id, suite.repetitions),
    ).fetchone()
    what = f"experiment {experiment_id}" if experiment_id else f"scenario {scenario_id}"
    if row is None:
        raise SelectionError(f"{what} has no experiment in suite {suite.name}")
    found_id, found_scenario, repetition, status, claimed_by = row
    if status == "finished":
        raise SelectionError(f"{what}: experiment {found_id} is already finished; nothing to force")
    if status == "abandoned":
        raise SelectionError(f"{what}: experiment {found_id} was abandoned: its failed attempts reached max_attempts "
                             f"({suite.max_attempts}); raise max_attempts in {suite.path} to run it again")
    if claimed_by is not None:
        raise SelectionError(f"{what}: experiment {found_id} is claimed by run {claimed_by}; wait until that run "
                             f"ends (or its claim is reclaimed as stale)")
    if found_scenario not in by_id:
        raise SelectionError(f"experiment {found_id} belongs to scenario {found_scenario}, which suite "
                             f"{suite.name} no longer holds")
    conn.execute("UPDATE experiment SET claimed_by = %s, claimed_at = now() WHERE id = %s", (holder, found_id))
    scenario = by_id[found_scenario]
    return Selection(experiment_id=found_id, scenario_id=found_scenario, repetition=repetition,
                     params=dict(scenario.params), choice_seed=0, suite=suite.name, scenario_index=scenario.index)
