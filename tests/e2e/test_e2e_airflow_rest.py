"""The real Airflow components: a REST trigger with a token, a backfill of two slots, a killed task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from e2e_harness import E2E

from kubexp.airflow_api import AirflowClient
from kubexp.services import LocalServices

KUBEXP = str(Path(sys.executable).parent / "kubexp")


@pytest.fixture(scope="module")
def airflow(e2e: E2E) -> Iterator[AirflowClient]:
    """api-server, scheduler, dag-processor and triggerer of `kubexp services up`, stopped afterwards."""
    services = LocalServices.from_env()
    services.up(log=lambda line: None)
    try:
        yield AirflowClient.from_env()
    finally:
        for proc in services.processes():
            if proc.name.startswith("airflow-"):
                proc.stop()


def kubexp(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEXP, *args], capture_output=True, text=True, timeout=timeout, env=os.environ)


@pytest.mark.slow
def test_rest_trigger_then_backfill_of_two_slots(e2e: E2E, airflow: AirflowClient) -> None:
    run_id = "ci__e2e+1:00"  # '+' and ':' must survive the URL
    triggered = kubexp("trigger", "e2e-rest", "--run-id", run_id, "--wait", "--timeout", "300")
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert f"triggered e2e-rest run {run_id}" in triggered.stdout and "ended: success" in triggered.stdout
    again = kubexp("trigger", "e2e-rest", "--run-id", run_id)
    assert again.returncode == 0 and "already exists" in again.stdout  # idempotent for a retried CI job

    backfill = kubexp("backfill", "e2e-rest", "--to-slot", "2", "--wait", "--timeout", "600")
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert "slot    1" in backfill.stdout and "slot    2" in backfill.stdout
    nothing = kubexp("backfill", "e2e-rest", "--to-slot", "2")
    assert nothing.returncode == 0 and "nothing to backfill" in nothing.stdout

    runs = airflow.dag_runs("e2e-rest")
    assert sorted(run["run_type"] for run in runs) == ["backfill", "backfill", "manual"]  # no scheduled run
    assert all(run["state"] == "success" for run in runs)
    [(finished, experiments)] = e2e.query(
        "SELECT count(*) FILTER (WHERE status = 'finished'), count(*) FROM experiment WHERE suite = 'e2e-rest'")
    assert (finished, experiments) == (3, 3)

    page = airflow.login.url + "/kubexp/"
    assert requests.get(page, timeout=30).status_code == 401
    shown = requests.get(page, headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=30)
    assert shown.status_code == 200 and "e2e-rest" in shown.text and "<b>3</b> of 3 finished" in shown.text


def _load_task_process(suite: str, timeout: float = 180) -> psutil.Process:
    """The task process running `load` of a suite: the parent of the JMeter master writing its JTL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "java" in (proc.info["name"] or "") and "ApacheJMeter" in cmdline and f"/{suite}/" in cmdline \
                    and " -n " in f" {cmdline} " and " -s " not in f" {cmdline} ":
                time.sleep(2)  # mid-load: the JMeter master has sent requests for a while
                return proc.parent()
        time.sleep(0.2)
    raise AssertionError(f"no JMeter master of suite {suite} appeared within {timeout:.0f} s")


@pytest.mark.slow
def test_killed_task_fails_the_attempt_and_the_next_run_finishes_it(e2e: E2E, airflow: AirflowClient) -> None:
    airflow.wait_for_dag("e2e-fault")
    airflow.trigger("e2e-fault", "fault-1")
    _load_task_process("e2e-fault").send_signal(signal.SIGKILL)
    killed = airflow.wait_for_run("e2e-fault", "fault-1", timeout_s=300)
    assert killed["state"] == "failed"
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("e2e-fault", "fault-1")}
    assert states["load"] == "failed" and states["cleanup"] == "success", states
    [(experiment_id, status, claimed_by)] = e2e.query(
        "SELECT id::text, status, claimed_by FROM experiment WHERE suite = 'e2e-fault'")
    assert (status, claimed_by) == ("unfinished", None)
    [(outcome, error)] = e2e.query("SELECT outcome, error FROM attempt WHERE experiment_id = %s", experiment_id)
    assert outcome == "failed" and error
    assert e2e.query("SELECT * FROM cluster_lock") == []

    airflow.trigger("e2e-fault", "fault-2")
    assert airflow.wait_for_run("e2e-fault", "fault-2", timeout_s=300)["state"] == "success"
    attempts = e2e.query("SELECT id, outcome FROM attempt WHERE experiment_id = %s ORDER BY id", experiment_id)
    assert [outcome for _, outcome in attempts] == ["failed", "succeeded"]
    [(status, finished_by)] = e2e.query("SELECT status, finished_attempt_id FROM experiment WHERE id = %s",
                                        experiment_id)
    assert (status, finished_by) == ("finished", attempts[1][0])
    [(rows, seconds, attempts_in_rows)] = e2e.query(
        "SELECT count(*), count(DISTINCT t), count(DISTINCT attempt_id) FROM load_second WHERE experiment_id = %s",
        experiment_id)
    assert rows == seconds >= 5 and attempts_in_rows == 1  # no per-second row twice, none of the killed attempt
    assert e2e.query("SELECT DISTINCT attempt_id FROM metric_series WHERE experiment_id = %s",
                     experiment_id) == [(attempts[1][0],)]
