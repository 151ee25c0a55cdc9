"""How far a suite has come: per scenario and in total."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from kubexp.store import chains
from kubexp.store.db import StoreError


def suite_status(conn: psycopg.Connection, suite_name: str, lease_key: str | None = None) -> dict[str, Any]:
    """Counts over the suite's current plan (active scenarios x repetitions), plus the cluster lease.

    Keys: suite, cluster, path, repetitions, scenarios, experiments, finished, unfinished, abandoned (failed
    attempts reached max_attempts), running,
    failed_attempts (failed or abandoned), abandoned_attempts, lock (the lease on `lease_key`, the
    suite's target: kubexp.platform.lease_key; None when not given or free), chain (the newest chain of runs
    until done: kubexp.store.chains.latest; None if none), per_scenario (one dict per scenario in matrix order:
    scenario_id, index, params, experiments, finished, unfinished, abandoned, running, failed_attempts).
    """
    with conn.cursor(row_factory=dict_row) as cur:
        try:
            suite = cur.execute(
                "SELECT name, cluster, path, repetitions FROM suite WHERE name = %s", (suite_name,)
            ).fetchone()
        except psycopg.errors.UndefinedTable as exc:
            raise StoreError("the results database has no kubexp schema yet; run `kubexp db upgrade`") from exc
        if suite is None:
            raise StoreError(f"suite {suite_name!r} is not in the store; load it with `kubexp suite load FILE`")
        per_scenario = cur.execute(
            """
            SELECT ss.scenario_id, ss.position AS index, sc.params,
                   count(e.id)::integer AS experiments,
                   count(e.id) FILTER (WHERE e.status = 'finished')::integer AS finished,
                   count(e.id) FILTER (WHERE e.status = 'unfinished')::integer AS unfinished,
                   count(e.id) FILTER (WHERE e.status = 'abandoned')::integer AS abandoned,
                   count(e.id) FILTER (WHERE e.status = 'unfinished' AND e.claimed_by IS NOT NULL)::integer
                       AS running,
                   coalesce(sum(attempts.failed), 0)::integer AS failed_attempts,
                   coalesce(sum(attempts.abandoned), 0)::integer AS abandoned_attempts
            FROM suite_scenario ss
            JOIN scenario sc ON sc.id = ss.scenario_id
            LEFT JOIN experiment e ON e.suite = ss.suite AND e.scenario_id = ss.scenario_id
                AND e.repetition <= %s + ss.extra_repetitions
            LEFT JOIN LATERAL (
                SELECT count(*) FILTER (WHERE a.outcome IN ('failed', 'abandoned')) AS failed,
                       count(*) FILTER (WHERE a.outcome = 'abandoned') AS abandoned
                FROM attempt a WHERE a.experiment_id = e.id
            ) attempts ON true
            WHERE ss.suite = %s AND ss.active
            GROUP BY ss.scenario_id, ss.position, sc.params
            ORDER BY ss.position
            """,
            (suite["repetitions"], suite_name),
        ).fetchall()

    def total(key: str) -> int:
        return sum(int(row[key]) for row in per_scenario)

    return {
        "suite": suite["name"], "cluster": suite["cluster"], "path": suite["path"],
        "repetitions": suite["repetitions"],
        "scenarios": len(per_scenario), "experiments": total("experiments"), "finished": total("finished"),
        "unfinished": total("unfinished"), "abandoned": total("abandoned"), "running": total("running"),
        "failed_attempts": total("failed_attempts"), "abandoned_attempts": total("abandoned_attempts"),
        "lock": lease(conn, lease_key) if lease_key else None,
        "chain": chains.latest(conn, suite_name),
        "per_scenario": [dict(row) for row in per_scenario],
    }


def lease(conn: psycopg.Connection, lease_key: str) -> dict[str, Any] | None:
    """The cluster lease on a target (holder, acquired_at, expires_at, expired), None when free."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT holder, acquired_at, expires_at, expires_at < now() AS expired FROM cluster_lock "
            "WHERE cluster = %s", (lease_key,)).fetchone()
    return None if row is None else {key: (str(value) if key != "expired" else value) for key, value in row.items()}
