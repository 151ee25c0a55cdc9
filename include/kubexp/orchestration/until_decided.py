"""Repetitions until the answer is known (`kubexp verdict|compare ... --until-decided --max-repetitions N`).

Round by round: while planned experiments are unfinished, an Airflow backfill of the suite's DAG runs
them; once none is, the scenarios whose answer is still undecided get one more repetition each
(stored as the scenario's extra repetitions, kubexp.store.suites.add_repetitions) as long as they plan
fewer than N, and the next backfill runs those. Only undecided scenarios then have unfinished
experiments, so the selection rule (fewest finished first, seeded ties) takes nothing else, and
interleaves a comparison's baseline and candidate. It stops when everything is decided, when no
undecided scenario may grow (the budget is spent), or when a round finished no experiment.

A backfill re-runs slots 1..k of the DAG (reprocess "completed": Airflow clears and reruns a slot's
earlier run); each run still takes the next experiment by the selection rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from kubexp.orchestration import suite_dag
from kubexp.orchestration.airflow_api import AirflowClient, slot_window
from kubexp.store import db, suites

Undecided = Callable[[psycopg.Connection], Sequence[str]]  # the scenario ids whose answer is still open


@dataclass
class Round:
    added: list[str]  # scenarios that got one more repetition this round (empty: planned ones ran)
    runs: int
    failed_runs: int
    finished: int  # experiments finished by this round's runs

    def to_json(self) -> dict[str, Any]:
        return {"added_repetitions": self.added, "runs": self.runs, "failed_runs": self.failed_runs,
                "finished": self.finished}


@dataclass
class Outcome:
    rounds: list[Round] = field(default_factory=list)
    stopped: str = ""  # why the loop ended

    def to_json(self) -> dict[str, Any]:
        return {"rounds": [r.to_json() for r in self.rounds], "stopped": self.stopped}


def _finished(conn: psycopg.Connection, suite: str) -> int:
    row = conn.execute("SELECT count(*) FROM experiment WHERE suite = %s AND status = 'finished'", (suite,)).fetchone()
    return int(row[0]) if row else 0


def run_slots(client: AirflowClient, dag_id: str, count: int, *, timeout_s: float) -> list[dict[str, Any]]:
    """Backfill slots 1..count of the DAG, rerunning slots that ran before, and wait; the runs it made."""
    client.wait_for_dag(dag_id)
    details = client.dag_details(dag_id)
    start, end = datetime.fromisoformat(details["start_date"]), datetime.fromisoformat(details["end_date"])
    first, last = slot_window(start, 1, min(count, suite_dag.slot_of(end)))
    created = client.create_backfill(dag_id, first, last, reprocess="completed")
    if created is None:
        return []
    return client.backfill_runs(client.wait_for_backfill(created["id"], timeout_s=timeout_s))


def until_decided(suite: str, undecided: Undecided, max_repetitions: int, *,
                  run: Callable[[int], list[dict[str, Any]]], say: Callable[[str], None]) -> Outcome:
    """Add repetitions to undecided scenarios and run them until decided or out of budget.

    `run(count)` runs `count` experiments of the suite and returns its runs (each with a `state`): the
    command line passes a backfill of the suite's DAG (run_slots)."""
    outcome = Outcome()
    while True:
        with db.connect() as conn:
            pending = suites.unfinished_planned(conn, suite)
            added: list[str] = []
            if not pending:
                open_ids = list(undecided(conn))
                if not open_ids:
                    outcome.stopped = "every answer is decided"
                    break
                added = suites.add_repetitions(conn, suite, open_ids, max_repetitions)
                if not added:
                    outcome.stopped = (f"budget spent: the {len(open_ids)} undecided scenario(s) plan "
                                       f"{max_repetitions} repetitions (--max-repetitions)")
                    break
                pending = len(added)
            before = _finished(conn, suite)
        say(f"round {len(outcome.rounds) + 1}: {pending} experiment(s) to run"
            + (f", one more repetition of scenario(s) {', '.join(added)}" if added else " (planned, unfinished)"))
        runs = run(pending)
        with db.connect() as conn:
            finished = _finished(conn, suite) - before
        failed = sum(1 for r in runs if r.get("state") != "success")
        outcome.rounds.append(Round(added, len(runs), failed, finished))
        say(f"round {len(outcome.rounds)}: {len(runs)} run(s), {failed} failed, {finished} experiment(s) finished")
        if finished == 0:
            outcome.stopped = f"round {len(outcome.rounds)} finished no experiment ({failed} failed run(s)); stopped"
            break
    say(f"until-decided: {outcome.stopped}")
    return outcome
