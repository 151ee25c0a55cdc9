"""The real Airflow components: a REST trigger with a token, backfills (missing, failed), killed tasks."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import requests
from e2e_harness import E2E, explain, kubexp, load_task_process

from kubexp.orchestration.airflow_api import AirflowClient


@pytest.mark.slow
def test_killed_run_then_rest_trigger_then_backfill_complete_the_suite(e2e: E2E, airflow: AirflowClient) -> None:
    # 1. A run whose load task is killed (SIGKILL to the task process, mid-load).
    airflow.wait_for_dag("e2e-rest")
    airflow.trigger("e2e-rest", "killed")
    load_task_process(e2e, "e2e-rest").send_signal(signal.SIGKILL)
    killed = airflow.wait_for_run("e2e-rest", "killed", timeout_s=300)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("e2e-rest", "killed")}
    assert killed["state"] == "failed" and states["load"] == "failed" and states["cleanup"] == "success", \
        explain(e2e, airflow, "e2e-rest", "killed")
    [(experiment_id,)] = e2e.query("SELECT DISTINCT a.experiment_id::text FROM attempt a JOIN experiment e "
                                   "ON e.id = a.experiment_id WHERE e.suite = 'e2e-rest'")
    [(outcome, error)] = e2e.query("SELECT outcome, error FROM attempt WHERE experiment_id = %s", experiment_id)
    assert outcome == "failed" and error
    assert e2e.query("SELECT status, claimed_by FROM experiment WHERE id = %s", experiment_id) == [
        ("unfinished", None)]
    assert e2e.query("SELECT * FROM cluster_lock") == []

    # 2. One run over REST with a token (the CLI), with an id that needs URL-encoding: it finishes that experiment.
    run_id = "ci__e2e+1:00"
    triggered = kubexp("trigger", "e2e-rest", "--run-id", run_id, "--wait", "--timeout", "300")
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr + explain(e2e, airflow, "e2e-rest", run_id)
    assert f"triggered e2e-rest run {run_id}" in triggered.stdout and "ended: success" in triggered.stdout
    again = kubexp("trigger", "e2e-rest", "--run-id", run_id)
    assert again.returncode == 0 and "already exists" in again.stdout  # idempotent for a retried CI job
    attempts = e2e.query("SELECT id, outcome FROM attempt WHERE experiment_id = %s ORDER BY id", experiment_id)
    assert [outcome for _, outcome in attempts] == ["failed", "succeeded"]
    assert e2e.query("SELECT status, finished_attempt_id FROM experiment WHERE id = %s", experiment_id) == [
        ("finished", attempts[1][0])]
    [(rows, seconds, attempts_in_rows)] = e2e.query(
        "SELECT count(*), count(DISTINCT t), count(DISTINCT attempt_id) FROM load_second WHERE experiment_id = %s",
        experiment_id)
    assert rows == seconds >= 5 and attempts_in_rows == 1  # no per-second row twice, none of the killed attempt
    assert e2e.query("SELECT DISTINCT attempt_id FROM metric_series WHERE experiment_id = %s",
                     experiment_id) == [(attempts[1][0],)]

    # 3. Backfill: slot 1's load is killed (the run fails); `--reprocess missing` then runs only slot 2,
    #    `--reprocess failed` reruns slot 1. Together they run the two experiments left.
    started = kubexp("backfill", "e2e-rest", "--to-slot", "1")
    assert started.returncode == 0 and "slots 1..1" in started.stdout, started.stdout + started.stderr
    backfill_id = int(started.stdout.split()[1])
    load_task_process(e2e, "e2e-rest").send_signal(signal.SIGKILL)
    airflow.wait_for_backfill(backfill_id, timeout_s=300)
    [slot_1] = airflow.dag_runs("e2e-rest", run_type="backfill")
    assert slot_1["state"] == "failed", explain(e2e, airflow, "e2e-rest", slot_1["dag_run_id"])
    missing = kubexp("backfill", "e2e-rest", "--to-slot", "2", "--wait", "--timeout", "600")
    backfill_runs = [run["dag_run_id"] for run in airflow.dag_runs("e2e-rest", run_type="backfill")]
    assert missing.returncode == 0, missing.stdout + missing.stderr + "".join(
        explain(e2e, airflow, "e2e-rest", run_id) for run_id in backfill_runs)
    assert "slot    2" in missing.stdout and "success" in missing.stdout
    assert f"slot    1  {slot_1['dag_run_id']}  failed earlier, not rerun (use --reprocess failed)" in missing.stdout
    nothing = kubexp("backfill", "e2e-rest", "--to-slot", "2")
    assert nothing.returncode == 0 and "use --reprocess failed" in nothing.stdout
    failed = kubexp("backfill", "e2e-rest", "--to-slot", "2", "--reprocess", "failed", "--wait", "--timeout", "600")
    assert failed.returncode == 0, failed.stdout + failed.stderr + explain(e2e, airflow, "e2e-rest",
                                                                           slot_1["dag_run_id"])
    assert f"slot    1  {slot_1['dag_run_id']}  success" in failed.stdout
    runs = airflow.dag_runs("e2e-rest")
    assert sorted(run["run_type"] for run in runs) == ["backfill", "backfill", "manual", "manual"]  # none scheduled
    [(finished, experiments)] = e2e.query(
        "SELECT count(*) FILTER (WHERE status = 'finished'), count(*) FROM experiment WHERE suite = 'e2e-rest'")
    assert (finished, experiments) == (3, 3)

    # 4. The suites page: behind Airflow's login, with the suite's counts.
    page = airflow.login.url + "/kubexp/"
    assert requests.get(page, timeout=30).status_code == 401
    shown = requests.get(page, headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=30)
    assert shown.status_code == 200 and "e2e-rest" in shown.text and "<b>3</b> of 3 finished" in shown.text
    assert "SLOs: 0 met, 0 missed, 1 undecided" in shown.text  # 3 experiments give no 95 % interval


@pytest.mark.slow
def test_verdict_until_decided_adds_a_repetition_and_runs_it_through_backfill(e2e: E2E, airflow: AirflowClient,
                                                                             tmp_path: Path) -> None:
    """e2e-rest's SLO stays undecided below 6 experiments: --until-decided runs what is unfinished, then grows the
    scenario to the budget of 4 through a backfill that reruns slot 1, and says it stopped on the budget."""
    airflow.wait_for_dag("e2e-rest")
    result = kubexp("verdict", "e2e-rest", "--until-decided", "--max-repetitions", "4", "--timeout", "900",
                    "--json", str(tmp_path / "verdict.json"), timeout=1800)
    runs = [run["dag_run_id"] for run in airflow.dag_runs("e2e-rest")]
    assert result.returncode == 0, result.stdout + result.stderr + "".join(
        explain(e2e, airflow, "e2e-rest", run_id) for run_id in runs)
    rounds = json.loads((tmp_path / "verdict.json").read_text())["until_decided"]
    assert [len(r["added_repetitions"]) for r in rounds["rounds"]][-1:] == [1] and rounds["rounds"][-1]["finished"] == 1
    assert rounds["stopped"].startswith("budget spent: the 1 undecided scenario(s) plan 4 repetitions")
    [(finished, extra)] = e2e.query(
        "SELECT count(*) FILTER (WHERE e.status = 'finished'), max(ss.extra_repetitions) FROM experiment e "
        "JOIN suite_scenario ss ON ss.suite = e.suite AND ss.scenario_id = e.scenario_id WHERE e.suite = 'e2e-rest'")
    assert (finished, extra) == (4, 1)
    assert "0 met, 0 missed, 1 undecided" in result.stdout
    [(values,)] = e2e.query("SELECT count(*) FROM slo_value v JOIN experiment e ON e.id = v.experiment_id "
                            "WHERE e.suite = 'e2e-rest'")
    assert values == 4
