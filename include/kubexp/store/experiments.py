"""Finishing an experiment: the one place where an attempt's data becomes the experiment's result."""

from __future__ import annotations

import psycopg

from kubexp.store.db import StoreError


def finish_experiment(conn: psycopg.Connection, experiment_id: str, attempt_id: int) -> None:
    """Mark the experiment finished with this attempt's data; the attempt becomes 'succeeded'.

    Refused when the attempt is not a live attempt of this experiment or stored no load rows, so no
    experiment is ever finished with partial data. Rows that other attempts left behind are removed
    (their artifacts stay as evidence), and the steady-state aggregate is computed. Finishing again
    with the same attempt does nothing.
    """
    with conn.transaction():
        row = conn.execute(
            "SELECT e.status, e.finished_attempt_id, a.outcome FROM experiment e "
            "LEFT JOIN attempt a ON a.id = %s AND a.experiment_id = e.id WHERE e.id = %s FOR UPDATE OF e",
            (attempt_id, experiment_id),
        ).fetchone()
        if row is None:
            raise StoreError(f"experiment {experiment_id} does not exist")
        status, finished_by, outcome = row
        if status == "finished":
            if finished_by == attempt_id:
                return
            raise StoreError(f"experiment {experiment_id} was already finished by attempt {finished_by}")
        if outcome is None:
            raise StoreError(f"attempt {attempt_id} is not an attempt of experiment {experiment_id}")
        if outcome not in ("running", "succeeded"):
            raise StoreError(f"attempt {attempt_id} ended as {outcome}; it cannot finish experiment {experiment_id}")
        loaded = conn.execute(
            "SELECT count(*) FROM load_second WHERE experiment_id = %s AND attempt_id = %s", (experiment_id, attempt_id)
        ).fetchone()
        if not loaded or not loaded[0]:
            raise StoreError(
                f"attempt {attempt_id} stored no load rows for experiment {experiment_id}; store the load data "
                f"(ingest.store_experiment_data) before finishing"
            )
        for table in ("load_second", "load_experiment", "metric_series", "platform_event"):
            conn.execute(
                f"DELETE FROM {table} WHERE experiment_id = %s AND attempt_id <> %s",  # table: our own constants
                (experiment_id, attempt_id),
            )
        conn.execute(
            "UPDATE attempt SET outcome = 'succeeded', ended_at = coalesce(ended_at, now()) WHERE id = %s",
            (attempt_id,),
        )
        conn.execute(
            "UPDATE experiment SET status = 'finished', finished_at = now(), finished_attempt_id = %s, "
            "claimed_by = NULL, claimed_at = NULL WHERE id = %s",
            (attempt_id, experiment_id),
        )
        conn.execute("SELECT refresh_experiment_aggregate(ARRAY[%s::uuid])", (experiment_id,))
