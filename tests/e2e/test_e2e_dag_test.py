"""`dag.test()` of a suite DAG runs one real, short experiment on the local platform end to end."""

from __future__ import annotations

import pytest
from e2e_harness import E2E


@pytest.mark.slow
def test_dag_test_runs_a_real_experiment(e2e: E2E) -> None:
    dry, run = e2e.dag_test("e2e-dagtest", '1:{"dry_run": true}', 2)

    # The dry run picks the experiment and runs preflight, then touches nothing and records nothing.
    assert dry["state"] == "success", (dry, e2e.failed_tasks_log("e2e-dagtest"))
    assert dry["tasks"]["select"] == dry["tasks"]["cleanup"] == "success"
    assert {dry["tasks"][step] for step in ("preflight", "teardown", "deploy", "load", "finalize")} == {"skipped"}

    assert run["state"] == "success", (run, e2e.failed_tasks_log("e2e-dagtest"))
    tasks = run["tasks"]
    for step in ("select", "preflight", "nodes_check", "teardown", "etcd", "deploy", "deploy_wait_rollout", "load",
                 "collect", "finalize", "cleanup"):
        assert tasks[step] == "success", (step, tasks)
    assert tasks["nodes_reboot"] == "skipped" and tasks["suite_complete"] == "skipped"

    [(experiment_id, attempt_id)] = e2e.query(
        "SELECT id::text, finished_attempt_id FROM experiment WHERE suite = 'e2e-dagtest' AND status = 'finished'")
    [(outcome, error)] = e2e.query("SELECT outcome, error FROM attempt WHERE experiment_id = %s", experiment_id)
    assert (outcome, error) == ("succeeded", None)
    [(seconds, requests)] = e2e.query(
        "SELECT count(*), sum(requests) FROM load_second WHERE experiment_id = %s AND attempt_id = %s",
        experiment_id, attempt_id)
    assert seconds >= 5 and requests > 0
    [(points,)] = e2e.query("SELECT count(*) FROM metric_point p JOIN metric_series s ON s.id = p.series_id "
                            "WHERE s.experiment_id = %s", experiment_id)
    assert points > 0
    kinds = {kind for (kind,) in e2e.query("SELECT kind FROM platform_event WHERE experiment_id = %s", experiment_id)}
    assert {"Started", "Ready"} <= kinds  # the rollout, before t = 0
    artifacts = {kind for (kind,) in e2e.query("SELECT kind FROM artifact WHERE experiment_id = %s", experiment_id)}
    assert {"jtl", "etcd-log", "log"} <= artifacts  # the JTL, the local etcd's log, the SUT's logs
    [(facts,)] = e2e.query("SELECT facts FROM provenance WHERE attempt_id = %s", attempt_id)
    assert {"airflow", "selection", "preflight", "etcd", "platform", "load_servers", "load", "host"} <= set(facts)
    assert facts["load"]["servers"] == facts["load_servers"] and len(facts["load_servers"]) == 1  # restarted by deploy
    assert facts["preflight"]["allow_dirty"] is True and facts["preflight"]["results_dir"]["fstype"] == "tmpfs"
    assert e2e.query("SELECT * FROM cluster_lock") == []  # cleanup released the cluster
    assert not (e2e.home / "local-platform").exists()  # and removed the SUT


@pytest.mark.slow
def test_an_error_that_needs_a_fix_stops_a_chain_of_runs(e2e: E2E) -> None:
    """A forced experiment that does not exist is an ExperimentError in select: the run's until_done branch
    stops the chain (needs_fix) instead of starting the next run."""
    missing = "00000000-0000-0000-0000-000000000000"
    [run] = e2e.dag_test("e2e-dagtest", f'1:{{"until_done": true, "experiment": "{missing}"}}')
    assert run["state"] == "failed", (run, e2e.failed_tasks_log("e2e-dagtest"))
    tasks = run["tasks"]
    assert (tasks["select"], tasks["until_done"], tasks["until_done_next"]) == ("failed", "success", "skipped"), tasks
    [(number, failed, decision, note)] = e2e.query(
        "SELECT number, failed, decision, note FROM run_chain_run WHERE run_id = %s", run["run_id"])
    assert (number, failed, decision) == (1, True, "needs_fix")
    assert f"Chain stopped: an error that needs a fix, not another run: ExperimentError: experiment {missing} has " \
           f"no experiment in suite e2e-dagtest." in note
    assert e2e.query("SELECT stop_reason FROM run_chain WHERE id = %s", run["run_id"]) == [("needs_fix",)]
    assert e2e.query("SELECT * FROM cluster_lock") == []  # cleanup ran and released the lease
