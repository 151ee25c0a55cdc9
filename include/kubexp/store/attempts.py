"""The attempt ledger: every try at an experiment, its host, outcome, error and provenance."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kubexp.store.db import StoreError

log = logging.getLogger(__name__)

OUTCOMES = ("succeeded", "failed", "abandoned")


def open_attempt(conn: psycopg.Connection, experiment_id: str, run_id: str, try_number: int, host: str) -> int:
    """Record a new try (idempotent for the same run id and try number); returns the attempt id.

    The experiment stays claimed while the attempt runs; a finished experiment is refused.
    """
    with conn.transaction():
        row = conn.execute("SELECT status FROM experiment WHERE id = %s FOR UPDATE", (experiment_id,)).fetchone()
        if row is None:
            raise StoreError(f"experiment {experiment_id} does not exist; load its suite with `kubexp suite load`")
        if row[0] == "finished":
            raise StoreError(f"experiment {experiment_id} is already finished; select another one")
        attempt = conn.execute(
            """
            INSERT INTO attempt (experiment_id, run_id, try_number, host) VALUES (%s, %s, %s, %s)
            ON CONFLICT (experiment_id, run_id, try_number) DO UPDATE SET heartbeat_at = now()
            RETURNING id, outcome
            """,
            (experiment_id, run_id, try_number, host),
        ).fetchone()
        assert attempt is not None
        if attempt[1] != "running":
            raise StoreError(f"attempt {attempt[0]} (run {run_id}, try {try_number}) already ended as {attempt[1]}")
        conn.execute(
            "UPDATE experiment SET claimed_by = coalesce(claimed_by, %s), claimed_at = now() WHERE id = %s",
            (run_id, experiment_id),
        )
    return int(attempt[0])


def heartbeat(conn: psycopg.Connection, attempt_id: int) -> None:
    """Show the attempt is alive (keeps it and its claim from being reclaimed as stale)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE attempt SET heartbeat_at = now() WHERE id = %s AND outcome = 'running' RETURNING experiment_id",
            (attempt_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"attempt {attempt_id} is not running any more ({_outcome(conn, attempt_id)})")
        conn.execute("UPDATE experiment SET claimed_at = now() WHERE id = %s AND claimed_by IS NOT NULL", row)


def close_attempt(conn: psycopg.Connection, attempt_id: int, outcome: str, error: str | None = None) -> None:
    """End a running attempt and free its experiment for a later attempt if it is not finished.

    Closing an attempt that already ended keeps its first outcome (logged), so a teardown may always close.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    with conn.transaction():
        row = conn.execute(
            "UPDATE attempt SET outcome = %s, error = %s, ended_at = now() WHERE id = %s AND outcome = 'running' "
            "RETURNING experiment_id",
            (outcome, error, attempt_id),
        ).fetchone()
        if row is None:
            current = _outcome(conn, attempt_id)
            if current != outcome:
                log.warning("attempt %s already ended as %s; not changing it to %s", attempt_id, current, outcome)
            return
        conn.execute(
            "UPDATE experiment SET claimed_by = NULL, claimed_at = NULL WHERE id = %s AND status = 'unfinished'", row
        )
        if outcome != "succeeded":
            apply_attempt_bound(conn, experiment_ids=[str(row[0])])


def apply_attempt_bound(conn: psycopg.Connection, *, suite: str | None = None,
                        experiment_ids: list[str] | None = None) -> list[tuple[str, str]]:
    """Abandon the unclaimed unfinished experiments whose failed (or reclaimed) attempts reached their suite's
    max_attempts, and make abandoned ones whose count is below it (the bound was raised) unfinished again.

    Limited to one suite and/or some experiments; returns (experiment id, new status) of each change."""
    changed = conn.execute(
        """
        WITH counted AS (
            SELECT e.id, e.status, s.max_attempts,
                   (SELECT count(*) FROM attempt a
                    WHERE a.experiment_id = e.id AND a.outcome IN ('failed', 'abandoned')) AS failed
            FROM experiment e JOIN suite s ON s.name = e.suite
            WHERE (%(suite)s::text IS NULL OR e.suite = %(suite)s)
              AND (%(ids)s::uuid[] IS NULL OR e.id = ANY (%(ids)s::uuid[]))
              AND (e.status = 'abandoned' OR (e.status = 'unfinished' AND e.claimed_by IS NULL))
        )
        UPDATE experiment e
        SET status = CASE WHEN c.failed >= c.max_attempts THEN 'abandoned' ELSE 'unfinished' END,
            abandoned_at = CASE WHEN c.failed >= c.max_attempts THEN now() END
        FROM counted c
        WHERE e.id = c.id AND (c.failed >= c.max_attempts) <> (c.status = 'abandoned')
        RETURNING e.id::text, e.status, c.failed
        """,
        {"suite": suite, "ids": experiment_ids},
    ).fetchall()
    for experiment_id, status, failed in changed:
        log.warning("experiment %s is %s now: %s failed attempts, max_attempts of its suite %s", experiment_id,
                    status, failed, "reached" if status == "abandoned" else "raised above that")
    return [(str(row[0]), str(row[1])) for row in changed]


def supersede_earlier_tries(conn: psycopg.Connection, experiment_id: str, run_id: str, try_number: int) -> list[int]:
    """Close as failed the still-running attempts that earlier tries of the same run opened (killed before
    they ended); the experiment stays claimed by the run. Returns their ids."""
    rows = conn.execute(
        "UPDATE attempt SET outcome = 'failed', ended_at = now(), "
        "error = format('try %%s of the same run took over (this try was killed before it ended)', %s::integer) "
        "WHERE experiment_id = %s AND run_id = %s AND try_number < %s AND outcome = 'running' RETURNING id",
        (try_number, experiment_id, run_id, try_number),
    ).fetchall()
    return [row[0] for row in rows]


def _outcome(conn: psycopg.Connection, attempt_id: int) -> str:
    row = conn.execute("SELECT outcome FROM attempt WHERE id = %s", (attempt_id,)).fetchone()
    if row is None:
        raise StoreError(f"attempt {attempt_id} does not exist")
    return str(row[0])


def record_provenance(conn: psycopg.Connection, attempt_id: int, facts: dict[str, Any]) -> None:
    """Merge facts (git commits, versions, hosts, seeds ...) into the attempt's provenance, key by key."""
    _outcome(conn, attempt_id)
    conn.execute(
        """
        INSERT INTO provenance (attempt_id, facts) VALUES (%s, %s)
        ON CONFLICT (attempt_id) DO UPDATE SET facts = provenance.facts || excluded.facts, recorded_at = now()
        """,
        (attempt_id, Jsonb(facts, dumps=partial(json.dumps, default=str))),
    )


def provenance(conn: psycopg.Connection, attempt_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT facts FROM provenance WHERE attempt_id = %s", (attempt_id,)).fetchone()
    return {} if row is None else dict(row[0])


def reclaim_stale(conn: psycopg.Connection, suite_name: str, stale_after_s: float) -> list[int]:
    """Abandon running attempts of the suite without a heartbeat for `stale_after_s`, and free stale claims.

    Returns the abandoned attempt ids. A claim (selected but never opened, or opened by a run that
    died) is stale once its last sign of life is older than the timeout.
    """
    with conn.transaction():
        abandoned = conn.execute(
            """
            UPDATE attempt a SET outcome = 'abandoned', ended_at = now(),
                   error = format('no heartbeat for more than %%s s (last %%s); reclaimed', %s::float8,
                                  a.heartbeat_at)
            FROM experiment e
            WHERE a.experiment_id = e.id AND e.suite = %s AND a.outcome = 'running'
              AND a.heartbeat_at < now() - make_interval(secs => %s)
            RETURNING a.id, a.experiment_id
            """,
            (stale_after_s, suite_name, stale_after_s),
        ).fetchall()
        conn.execute(
            """
            UPDATE experiment e SET claimed_by = NULL, claimed_at = NULL
            WHERE e.suite = %s AND e.status = 'unfinished' AND e.claimed_by IS NOT NULL
              AND (e.claimed_at < now() - make_interval(secs => %s) OR e.id = ANY (%s::uuid[]))
              AND NOT EXISTS (SELECT 1 FROM attempt a WHERE a.experiment_id = e.id AND a.outcome = 'running')
            """,
            (suite_name, stale_after_s, [row[1] for row in abandoned]),
        )
        if abandoned:
            apply_attempt_bound(conn, experiment_ids=[str(row[1]) for row in abandoned])
    for attempt_id, experiment_id in abandoned:
        log.warning("reclaimed stale attempt %s of experiment %s (no heartbeat for %s s)",
                    attempt_id, experiment_id, stale_after_s)
    return [int(row[0]) for row in abandoned]
