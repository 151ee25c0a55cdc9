"""Runs until done with the real Airflow components: a chain started once completes a suite through a killed
load and a scheduler restart; pausing the DAG stops a chain after its run; a scenario that always fails is
abandoned at its bound while the others finish."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from e2e_harness import E2E, explain, kubexp, load_task_process

from kubexp.local_services import LocalServices
from kubexp.orchestration.airflow_api import AirflowClient

CHAIN_TIMEOUT_S = 1500


def _wait_for_run_to_exist(airflow: AirflowClient, dag_id: str, run_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while run_id not in {run["dag_run_id"] for run in airflow.dag_runs(dag_id)}:
        assert time.monotonic() < deadline, f"run {run_id} of {dag_id} did not appear within {timeout:.0f} s"
        time.sleep(2)


def _wait_for_chain(e2e: E2E, airflow: AirflowClient, dag_id: str, chain_id: str) -> list[tuple[Any, ...]]:
    """Wait until the chain stopped and its last run ended; its runs' (number, run_id, failed, decision)."""
    deadline = time.monotonic() + CHAIN_TIMEOUT_S
    while not e2e.query("SELECT 1 FROM run_chain WHERE id = %s AND stopped_at IS NOT NULL", chain_id):
        runs = {run["dag_run_id"]: run["state"] for run in airflow.dag_runs(dag_id)}
        assert time.monotonic() < deadline, f"chain {chain_id} still going after {CHAIN_TIMEOUT_S} s: {runs}"
        time.sleep(5)
    rows = e2e.query("SELECT number, run_id, failed, decision FROM run_chain_run WHERE chain_id = %s ORDER BY number",
                     chain_id)
    airflow.wait_for_run(dag_id, rows[-1][1], timeout_s=300)
    return rows


def _one_at_a_time(airflow: AirflowClient, dag_id: str, run_ids: list[str]) -> None:
    runs = [airflow.dag_run(dag_id, run_id) for run_id in run_ids]
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later["start_date"] >= earlier["end_date"], (earlier, later)


@pytest.mark.slow
def test_a_chain_started_once_completes_the_suite_through_a_killed_load_and_a_scheduler_restart(
        e2e: E2E, airflow: AirflowClient) -> None:
    dag_id = "e2e-until-done"
    airflow.wait_for_dag(dag_id)
    started = kubexp("trigger", dag_id, "--until-done", "--run-id", "chain")
    assert started.returncode == 0 and f"triggered {dag_id} run chain" in started.stdout, started.stderr
    load_task_process(e2e, dag_id).send_signal(signal.SIGKILL)  # the first run's load, mid-load

    # Once the chain's second run exists, the scheduler is stopped and started again.
    _wait_for_run_to_exist(airflow, dag_id, "chain__until_done_2")
    [scheduler] = [proc for proc in LocalServices.from_env().processes() if proc.name == "airflow-scheduler"]
    assert scheduler.stop()
    scheduler.start(timeout=120)

    rows = _wait_for_chain(e2e, airflow, dag_id, "chain")
    run_ids = [row[1] for row in rows]
    assert run_ids == ["chain", *(f"chain__until_done_{n}" for n in range(2, len(rows) + 1))]
    assert rows[0][2:] == (True, "next") and rows[-1][3] == "complete", rows + [explain(e2e, airflow, dag_id, r)
                                                                                 for r in run_ids]
    assert [row[3] for row in rows[:-1]] == ["next"] * (len(rows) - 1)
    assert e2e.query("SELECT status, count(*) FROM experiment WHERE suite = %s GROUP BY status", dag_id) == [
        ("finished", 2)]
    [(killed_error,)] = e2e.query("SELECT error FROM attempt WHERE run_id = 'chain'")
    assert "load" in killed_error
    runs = {run["dag_run_id"]: run for run in airflow.dag_runs(dag_id)}
    assert set(runs) == set(run_ids) and runs["chain"]["run_type"] == "manual"
    assert {runs[run_id]["run_type"] for run_id in run_ids[1:]} == {"operator_triggered"}  # by until_done_next
    assert runs["chain"]["state"] == "failed" and runs[run_ids[-1]]["state"] == "success"
    _one_at_a_time(airflow, dag_id, run_ids)
    assert "Next run: chain__until_done_2." in runs["chain"]["note"]
    assert runs[run_ids[-1]]["note"].endswith("Chain stopped: suite complete: every experiment is finished.")
    assert runs["chain__until_done_2"]["conf"] == {"until_done": True, "max_failed_runs": 3, "overrides": {},
                                                   "chain": "chain"}
    status = kubexp("suite", "status", dag_id)
    assert "until_done chain chain: stopped at" in status.stdout and "(complete: suite complete" in status.stdout
    assert f"{len(rows)} runs ended so far (" in status.stdout, status.stdout
    time.sleep(5)  # and nothing starts after the chain stopped
    assert len(airflow.dag_runs(dag_id)) == len(rows)


@pytest.mark.slow
def test_pausing_stops_a_chain_and_a_scenario_that_always_fails_is_abandoned(e2e: E2E,
                                                                              airflow: AirflowClient) -> None:
    dag_id = "e2e-abandon"
    airflow.wait_for_dag(dag_id)
    assert kubexp("trigger", dag_id, "--until-done", "--run-id", "paused").returncode == 0
    load_task_process(e2e, dag_id)  # the first run is midway: pause the DAG
    airflow.request("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
    time.sleep(15)  # Airflow schedules no further task of a paused DAG ...
    assert airflow.dag_run(dag_id, "paused")["state"] == "running"
    airflow.unpause(dag_id)  # ... so the run ends once unpaused, and its last branch stops the chain
    rows = _wait_for_chain(e2e, airflow, dag_id, "paused")
    assert [(row[1], row[3]) for row in rows] == [("paused", "paused")], rows
    assert airflow.dag_run(dag_id, "paused")["note"].endswith("Chain stopped: the DAG is paused.")
    time.sleep(5)
    assert [run["dag_run_id"] for run in airflow.dag_runs(dag_id)] == ["paused"]

    # A new chain runs until the scenario whose requests time out has failed max_attempts (2) times.
    # `--wait` follows the chain run by run and exits 1 as the suite did not complete.
    waited = kubexp("trigger", dag_id, "--until-done", "--run-id", "abandon", "--wait", "--timeout",
                    str(CHAIN_TIMEOUT_S), timeout=CHAIN_TIMEOUT_S + 60)
    rows = _wait_for_chain(e2e, airflow, dag_id, "abandon")
    assert waited.returncode == 1 and waited.stdout.count(" ended: ") == len(rows), waited.stdout + waited.stderr
    assert "Chain stopped: nothing left to run" in waited.stdout.splitlines()[-1]
    assert rows[-1][3] == "max_attempts", rows + [explain(e2e, airflow, dag_id, row[1]) for row in rows]
    outcomes = e2e.query(
        "SELECT (sc.params ->> 'response_timeout_ms')::integer, e.status, "
        "count(a.id) FILTER (WHERE a.outcome = 'failed'), array_agg(a.error ORDER BY a.id) "
        "FROM experiment e JOIN scenario sc ON sc.id = e.scenario_id LEFT JOIN attempt a ON a.experiment_id = e.id "
        "WHERE e.suite = %s GROUP BY 1, 2 ORDER BY 1", dag_id)
    assert [row[:3] for row in outcomes] == [(1, "abandoned", 2), (10000, "finished", 0)], outcomes
    assert all("got no HTTP response" in error for error in outcomes[0][3]), outcomes[0][3]
    status = json.loads(kubexp("suite", "status", dag_id, "--json").stdout)
    assert (status["finished"], status["abandoned"], status["chain"]["stop_reason"]) == (1, 1, "max_attempts")
