"""Runs until done: the chain of runs a trigger with `until_done` starts, and each run's decision.

A chain's id is the run id of its first run. At the end of every run of the chain, its last branch
(dags/kubexp_suites.py, task `until_done`) records here whether the run failed and what comes next:
the next run, or why the chain stops (`STOP_REASONS`). Recording is idempotent per run, so a retried
branch repeats the decision it took the first time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

# Why a chain stopped, in the order the branch checks them.
STOP_REASONS = {
    "complete": "suite complete: every experiment is finished",
    "max_attempts": "nothing left to run: every experiment is finished or abandoned (max_attempts reached)",
    "needs_fix": "an error that needs a fix, not another run",
    "max_failed_runs": "too many failed runs in a row",
    "deadline": "the chain's deadline has passed",
    "paused": "the DAG is paused",
}
DEFAULT_MAX_FAILED_RUNS = 3


@dataclass(frozen=True)
class Progress:
    """What the store says about a suite at the end of a run."""

    experiments: int
    finished: int
    abandoned: int

    @property
    def left(self) -> int:
        return self.experiments - self.finished - self.abandoned


@dataclass(frozen=True)
class Decision:
    number: int  # this run's number in the chain (1 = the run that started it)
    decision: str  # "next" or a key of STOP_REASONS
    next_run_id: str | None
    note: str


def next_run_id(chain_id: str, number: int) -> str:
    """The run id of the chain's run `number` (2, 3, ...): it names the chain it continues."""
    return f"{chain_id}__until_done_{number}"


def decide(*, chain_id: str, number: int, failed: bool, failed_in_a_row: int, max_failed_runs: int,
           needs_fix: str | None, progress: Progress, deadline: datetime | None, now: datetime,
           paused: bool) -> Decision:
    """The reattempt rule: go on while experiments are left, unless an error needs a fix, a bound is reached
    or the DAG is paused. `failed_in_a_row` counts this run."""
    counts = (f"{progress.finished} of {progress.experiments} finished, {progress.abandoned} abandoned, "
              f"{progress.left} left")
    outcome = f"this run failed ({failed_in_a_row} in a row)" if failed else "this run succeeded"
    reason: str | None = None
    detail = ""
    if progress.left == 0:
        reason = "complete" if progress.abandoned == 0 else "max_attempts"
    elif needs_fix:
        reason, detail = "needs_fix", f": {needs_fix}"
    elif failed and failed_in_a_row >= max_failed_runs:
        reason, detail = "max_failed_runs", f" (max_failed_runs {max_failed_runs})"
    elif deadline is not None and now >= deadline:
        reason, detail = "deadline", f" ({deadline.isoformat(timespec='seconds')})"
    elif paused:
        reason = "paused"
    head = f"until_done chain {chain_id}, run {number}: {outcome}; {counts}. "
    if reason is None:
        following = next_run_id(chain_id, number + 1)
        return Decision(number, "next", following, head + f"Next run: {following}.")
    return Decision(number, reason, None, head + f"Chain stopped: {STOP_REASONS[reason]}{detail}.")


def register(conn: psycopg.Connection, chain_id: str, suite: str, dag_id: str, run_id: str, *,
             deadline: datetime | None, max_failed_runs: int) -> None:
    """Record the chain (first run) or its current run (later runs); idempotent."""
    conn.execute(
        "INSERT INTO run_chain (id, suite, dag_id, deadline, max_failed_runs, current_run_id) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET current_run_id = excluded.current_run_id",
        (chain_id, suite, dag_id, deadline, max_failed_runs, run_id))


def recorded(conn: psycopg.Connection, chain_id: str, run_id: str) -> Decision | None:
    """The decision a run of the chain took already (a retried branch takes the same one)."""
    row = conn.execute("SELECT number, decision, next_run_id, note FROM run_chain_run WHERE chain_id = %s "
                       "AND run_id = %s", (chain_id, run_id)).fetchone()
    return None if row is None else Decision(int(row[0]), str(row[1]), row[2], str(row[3]))


def earlier_runs(conn: psycopg.Connection, chain_id: str) -> tuple[int, int]:
    """(runs recorded so far, how many of the latest of them failed in a row)."""
    failed = [bool(row[0]) for row in conn.execute(
        "SELECT failed FROM run_chain_run WHERE chain_id = %s ORDER BY number", (chain_id,))]
    in_a_row = 0
    for run_failed in reversed(failed):
        if not run_failed:
            break
        in_a_row += 1
    return len(failed), in_a_row


def record(conn: psycopg.Connection, chain_id: str, run_id: str, failed: bool, decision: Decision) -> Decision:
    """Store a run's decision (the first one stored for the run wins) and stop the chain if it says so."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO run_chain_run (chain_id, number, run_id, failed, decision, next_run_id, note) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (chain_id, decision.number, run_id, failed, decision.decision, decision.next_run_id, decision.note))
        kept = recorded(conn, chain_id, run_id)
        assert kept is not None, f"run {run_id} of chain {chain_id}: number {decision.number} is another run's"
        if kept.decision == "next":
            conn.execute("UPDATE run_chain SET current_run_id = %s WHERE id = %s", (kept.next_run_id, chain_id))
        else:
            conn.execute("UPDATE run_chain SET stopped_at = coalesce(stopped_at, now()), "
                         "stop_reason = coalesce(stop_reason, %s) WHERE id = %s", (kept.decision, chain_id))
    return kept


def progress(conn: psycopg.Connection, suite: str) -> Progress:
    """Counts over the suite's current plan (active scenarios x their repetitions, with those added by
    `--until-decided`)."""
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE e.status = 'finished'), "
        "count(*) FILTER (WHERE e.status = 'abandoned') FROM experiment e "
        "JOIN suite s ON s.name = e.suite JOIN suite_scenario ss ON ss.suite = e.suite AND ss.scenario_id = "
        "e.scenario_id WHERE e.suite = %s AND ss.active AND e.repetition <= s.repetitions + ss.extra_repetitions",
        (suite,)).fetchone()
    assert row is not None
    return Progress(experiments=int(row[0]), finished=int(row[1]), abandoned=int(row[2]))


def latest(conn: psycopg.Connection, suite: str) -> dict[str, Any] | None:
    """The suite's newest chain: id, started_at, deadline, max_failed_runs, current_run_id, running,
    stopped_at, stop_reason, stop (its explanation), runs (so far), failed_runs, note (the latest run's)."""
    with conn.cursor(row_factory=dict_row) as cur:
        chain = cur.execute(
            "SELECT id, started_at, deadline, max_failed_runs, current_run_id, stopped_at, stop_reason "
            "FROM run_chain WHERE suite = %s ORDER BY started_at DESC, id DESC LIMIT 1", (suite,)).fetchone()
        if chain is None:
            return None
        runs = cur.execute("SELECT count(*) AS runs, count(*) FILTER (WHERE failed) AS failed_runs, "
                           "(array_agg(note ORDER BY number DESC))[1] AS note FROM run_chain_run WHERE chain_id = %s",
                           (chain["id"],)).fetchone() or {}
    return {**{key: str(value) if isinstance(value, datetime) else value for key, value in chain.items()},
            "running": chain["stopped_at"] is None,
            "stop": STOP_REASONS.get(chain["stop_reason"] or ""),
            "runs": int(runs.get("runs") or 0), "failed_runs": int(runs.get("failed_runs") or 0),
            "note": runs.get("note")}
