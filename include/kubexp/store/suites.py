"""Loading a suite into the store: its scenarios (shared by id) and one experiment per repetition."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kubexp.store import attempts
from kubexp.suite import Scenario, Suite

# First key of the two-int advisory locks kubexp takes per suite (the second is hashtext(suite name)).
SUITE_LOCK_NAMESPACE = 0x6B7870


def lock_suite(conn: psycopg.Connection, suite_name: str) -> None:
    """Serialise loaders and selectors of one suite until the current transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SUITE_LOCK_NAMESPACE, suite_name))


def fingerprint(suite: Suite, scenarios: list[Scenario] | None = None) -> str:
    """What the store must match for the suite's plan: scenario ids in order, repetitions, cluster, window."""
    ids = [scenario.id for scenario in (scenarios if scenarios is not None else suite.scenarios())]
    plan = [ids, suite.repetitions, suite.cluster, suite.platform, suite.seed, suite.warmup_s, suite.cooldown_s,
            suite.max_attempts]
    return hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:16]


def _definition(suite: Suite) -> dict[str, Any]:
    return {
        "suite": suite.name, "description": suite.description, "platform": suite.platform,
        "cluster": suite.cluster, "repetitions": suite.repetitions, "seed": suite.seed,
        "allow_dirty": suite.allow_dirty, "defaults": suite.defaults, "matrix": suite.matrix,
        "load": dict(suite.load.given), "metrics": dict(suite.metrics.given), "local": suite.local,
        "kubernetes": suite.kubernetes, "analysis": suite.analysis, "slo": suite.slo,
        "max_attempts": suite.max_attempts,
    }


def sync_suite(conn: psycopg.Connection, suite: Suite) -> tuple[int, int]:
    """Create the suite's scenarios and missing experiments; returns (scenarios_added, experiments_added).

    Idempotent. More repetitions or new matrix values add only what is missing; scenarios dropped
    from the matrix stay (with their data) but become inactive. A changed steady-state window
    recomputes the finished experiments' aggregates.
    """
    scenarios = suite.scenarios()
    with conn.transaction():
        lock_suite(conn, suite.name)
        before = conn.execute("SELECT warmup_s, cooldown_s FROM suite WHERE name = %s", (suite.name,)).fetchone()
        conn.execute(
            """
            INSERT INTO suite (name, platform, cluster, repetitions, seed, warmup_s, cooldown_s, fingerprint,
                               path, definition, max_attempts)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (name) DO UPDATE SET
                platform = excluded.platform, cluster = excluded.cluster, repetitions = excluded.repetitions,
                max_attempts = excluded.max_attempts,
                seed = excluded.seed, warmup_s = excluded.warmup_s, cooldown_s = excluded.cooldown_s,
                fingerprint = excluded.fingerprint, path = excluded.path, definition = excluded.definition,
                loaded_at = now()
            """,
            (suite.name, suite.platform, suite.cluster, suite.repetitions, suite.seed, suite.warmup_s,
             suite.cooldown_s, fingerprint(suite, scenarios), str(suite.path), Jsonb(_definition(suite)),
             suite.max_attempts),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO scenario (id, params) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                [(scenario.id, Jsonb(scenario.params)) for scenario in scenarios],
            )
        conn.execute("UPDATE suite_scenario SET active = false WHERE suite = %s", (suite.name,))
        links = conn.execute(
            """
            INSERT INTO suite_scenario (suite, scenario_id, position)
            SELECT %s, id, position FROM unnest(%s::text[], %s::integer[]) AS s (id, position)
            ON CONFLICT (suite, scenario_id) DO UPDATE SET position = excluded.position, active = true
            RETURNING (xmax = 0) AS inserted
            """,
            (suite.name, [s.id for s in scenarios], [s.index for s in scenarios]),
        ).fetchall()
        experiments = _plan_experiments(conn, suite.name, [s.id for s in scenarios], suite.repetitions)
        attempts.apply_attempt_bound(conn, suite=suite.name)  # max_attempts may have changed
        if before is not None and tuple(before) != (suite.warmup_s, suite.cooldown_s):
            conn.execute(
                "SELECT refresh_experiment_aggregate(array(SELECT id FROM experiment "
                "WHERE suite = %s AND status = 'finished'))",
                (suite.name,),
            )
    return sum(1 for (inserted,) in links if inserted), experiments


def _plan_experiments(conn: psycopg.Connection, suite_name: str, scenario_ids: list[str], repetitions: int) -> int:
    """Create the missing experiments of these scenarios: repetitions + each one's extra repetitions."""
    return conn.execute(
        """
        INSERT INTO experiment (suite, scenario_id, repetition)
        SELECT ss.suite, ss.scenario_id, r.repetition FROM suite_scenario ss
        CROSS JOIN LATERAL generate_series(1, %s + ss.extra_repetitions) AS r (repetition)
        WHERE ss.suite = %s AND ss.scenario_id = ANY (%s)
        ON CONFLICT (suite, scenario_id, repetition) DO NOTHING
        """,
        (repetitions, suite_name, scenario_ids),
    ).rowcount


def add_repetitions(conn: psycopg.Connection, suite_name: str, scenario_ids: list[str],
                    max_repetitions: int) -> list[str]:
    """One more repetition for each of these active scenarios that plans fewer than `max_repetitions`; returns those
    that got one. The new experiments are unfinished, so the next runs take them."""
    with conn.transaction():
        lock_suite(conn, suite_name)
        grown = [row[0] for row in conn.execute(
            """
            UPDATE suite_scenario ss SET extra_repetitions = ss.extra_repetitions + 1
            FROM suite s WHERE s.name = ss.suite AND ss.suite = %s AND ss.scenario_id = ANY (%s) AND ss.active
              AND s.repetitions + ss.extra_repetitions < %s
            RETURNING ss.scenario_id
            """, (suite_name, list(dict.fromkeys(scenario_ids)), max_repetitions)).fetchall()]
        row = conn.execute("SELECT repetitions FROM suite WHERE name = %s", (suite_name,)).fetchone()
        if grown and row:
            _plan_experiments(conn, suite_name, grown, int(row[0]))
    return grown


def unfinished_planned(conn: psycopg.Connection, suite_name: str) -> int:
    """Unfinished experiments the suite plans (active scenarios, within their repetitions and extra ones)."""
    row = conn.execute(
        """
        SELECT count(*) FROM experiment e
        JOIN suite_scenario ss ON ss.suite = e.suite AND ss.scenario_id = e.scenario_id
        JOIN suite s ON s.name = e.suite
        WHERE e.suite = %s AND ss.active AND e.status = 'unfinished'
          AND e.repetition <= s.repetitions + ss.extra_repetitions
        """, (suite_name,)).fetchone()
    return int(row[0]) if row else 0


def stored_fingerprint(conn: psycopg.Connection, suite_name: str) -> str | None:
    row = conn.execute("SELECT fingerprint FROM suite WHERE name = %s", (suite_name,)).fetchone()
    return None if row is None else str(row[0])
