"""One DAG per suite file in the suites folder; one DAG run = one experiment.

The tasks are thin: each is one call into `kubexp.experiment`, which holds the step logic and is
tested without a scheduler. What lives here is only Airflow's part: order, branches, sensors,
retries, params, the failure callback and the always-running cleanup.

Suites folder: KUBEXP_SUITES_DIR, else include/suites. Adding a suite file adds a DAG.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    DAG,
    ExceptionRetryPolicy,
    PokeReturnValue,
    RetryAction,
    RetryRule,
    TaskGroup,
    TriggerRule,
    chain,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from kubexp import experiment
from kubexp.experiment import ExperimentError
from kubexp.load.profiles import settle_s_for
from kubexp.orchestration import suite_dag
from kubexp.orchestration.lease_wait import WaitForCluster
from kubexp.preflight import PreflightError
from kubexp.settings import SettingsError
from kubexp.suite import Suite, SuiteError, load_suite, suite_files

log = logging.getLogger(__name__)

# The lease holder's own waits (nodes, rollout: seconds to minutes) poke: reschedule mode with short
# intervals fails at random in Airflow 3.3.2 (apache/airflow#71172), and deferring would add a
# triggerer round trip to waits of seconds. Waiting for a busy target (hours) is deferred instead
# (kubexp.orchestration.lease_wait): it holds no worker slot, so the holder's next task never starves.
LOCK_WAIT = timedelta(hours=6)
# Errors that name something for the user to fix (uncommitted code, a finished forced experiment, a lost
# lease) fail at once; a service that did not answer (preflight.ServiceUnavailable) gets the retries.
NO_RETRY: tuple[type[Exception], ...] = (PreflightError, ExperimentError, SettingsError)
NEEDS_A_FIX = ExceptionRetryPolicy(rules=[RetryRule(
    exception=list(NO_RETRY), action=RetryAction.FAIL, match_subclasses=False, reason="needs a fix, not a retry")])
NODES_READY_WAIT = timedelta(minutes=15)
ROLLOUT_WAIT = timedelta(minutes=10)


def _close_attempt_on_failure(context: dict[str, Any]) -> None:
    """Final failure of any step: the attempt is closed as failed with the step and its error."""
    ti = context["ti"]
    current = ti.xcom_pull(task_ids="select", key="experiment")
    experiment.fail(current, f"{ti.task_id}: {context.get('exception')!s}")


def build_dag(suite: Suite) -> DAG:
    scenarios = suite.scenarios()
    longest_load = timedelta(seconds=max(s.params["duration_s"] for s in scenarios) + settle_s_for(suite.load))
    with DAG(
        dag_id=suite_dag.dag_id(suite.name),
        dag_display_name=f"suite {suite.name}",
        description=suite.description or f"kubexp suite {suite.name}",
        doc_md=suite_dag.dag_doc(suite),
        # One slot per experiment: a daily schedule over a fixed past window that the scheduler
        # never fills by itself (catchup off); Airflow backfill fills missing or failed slots.
        schedule="@daily",
        start_date=suite_dag.SLOT_START,
        end_date=suite_dag.slot_end(suite),
        catchup=False,
        max_active_runs=1,
        params=suite_dag.trigger_params(suite),
        tags=["kubexp", f"platform:{suite.platform}", f"cluster:{suite.cluster}"],
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=15),
            "execution_timeout": timedelta(minutes=30),
            "on_failure_callback": _close_attempt_on_failure,
            "retry_policy": NEEDS_A_FIX,
        },
    ) as dag:

        # The lock is per cluster, not per DAG: max_active_runs does not hold back backfill runs,
        # and other suites may target the same cluster.
        lock = WaitForCluster(task_id="select_wait_for_cluster", suite_path=str(suite.path), wait=LOCK_WAIT,
                              poke_interval=10, retries=0)

        @task.branch(task_id="select")
        def select(params: dict[str, Any], dag_run=None, ti=None) -> str:
            current = experiment.select(suite.path, experiment.RunRef.of(dag_run, ti), params)
            ti.xcom_push(key="experiment", value=current.to_xcom() if current else None)
            return "preflight" if current else "suite_complete"

        suite_complete = EmptyOperator(task_id="suite_complete")

        @task(task_id="preflight", retries=1, retry_delay=timedelta(seconds=30))
        def preflight(current: dict[str, Any]) -> dict[str, Any]:
            facts = experiment.preflight(current)
            if current["dry_run"]:
                raise AirflowSkipException(f"dry run: preflight passed, {facts['plan']}; nothing was changed")
            return {"load_servers": facts.get("load_servers", [])}

        @task.branch(task_id="nodes_check")
        def nodes_check(current: dict[str, Any]) -> str:
            return "teardown" if not experiment.nodes_not_ready(current) else "nodes_reboot"

        @task(task_id="nodes_reboot", retries=1, retry_delay=timedelta(minutes=1))
        def nodes_reboot(current: dict[str, Any]) -> None:
            experiment.reboot_nodes(current)

        @task.sensor(task_id="nodes_wait_ready", mode="poke", poke_interval=10,
                     timeout=NODES_READY_WAIT.total_seconds(), retries=0)
        def nodes_wait_ready(current: dict[str, Any]) -> PokeReturnValue:
            return PokeReturnValue(is_done=not experiment.nodes_not_ready(current))

        # Reached straight from nodes_check or after a reboot, so one upstream is always skipped.
        # That rule also holds when preflight skipped a dry run (select succeeded): hence the check.
        @task(task_id="teardown", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def teardown(current: dict[str, Any]) -> None:
            if current["dry_run"]:
                raise AirflowSkipException("dry run: the SUT is left alone")
            experiment.teardown(current)

        @task(task_id="etcd")
        def etcd(current: dict[str, Any]) -> None:
            experiment.configure_etcd(current)

        @task(task_id="deploy")
        def deploy(current: dict[str, Any]) -> None:
            experiment.deploy(current)

        @task.sensor(task_id="deploy_wait_rollout", mode="poke", poke_interval=2,
                     timeout=ROLLOUT_WAIT.total_seconds(), retries=0)
        def deploy_wait_rollout(current: dict[str, Any]) -> PokeReturnValue:
            return PokeReturnValue(is_done=experiment.rollout_ready(current))

        # No retry: a load that broke off has already stressed the SUT, so a second try on it
        # would not be a clean repetition; a later run reattempts the experiment from scratch.
        @task(task_id="load", retries=0, execution_timeout=longest_load + timedelta(minutes=15))
        def load(current: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
            return experiment.run_load(current, checked)

        # Storing is idempotent (one transaction that replaces the experiment's rows), so retrying is safe.
        @task(task_id="collect", retries=3, retry_delay=timedelta(seconds=20))
        def collect(current: dict[str, Any], load_run: dict[str, Any]) -> dict[str, Any]:
            return experiment.collect(current, load_run)

        @task(task_id="finalize")
        def finalize(current: dict[str, Any], collected: dict[str, Any]) -> None:
            experiment.finalize(current, collected)

        @task(task_id="cleanup", retries=2, retry_delay=timedelta(seconds=10))
        def cleanup(dag_run=None, ti=None) -> None:
            # Pulled here rather than passed in: cleanup must also run when select failed before pushing.
            states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
            experiment.cleanup(ti.xcom_pull(task_ids="select", key="experiment"), suite.path,
                               dag_run.dag_id, dag_run.run_id,
                               failed_steps=sorted(task for task, state in states.items() if state == "failed"))

        chosen = select()
        current = chosen["experiment"]
        checked = preflight(current)
        # One group in the graph; the task ids stay nodes_check, nodes_reboot, nodes_wait_ready.
        with TaskGroup("nodes", prefix_group_id=False, tooltip="every node Ready, else reboot it and wait"):
            nodes = nodes_check(current)
            rebooted = nodes_reboot(current)
            nodes_ready = nodes_wait_ready(current)
        cleared = teardown(current)
        load_run = load(current, checked)
        finalized = finalize(current, collect(current, load_run))
        done = cleanup()

        chain(lock, chosen, [checked, suite_complete])
        chain(checked, nodes, [rebooted, cleared])
        chain(rebooted, nodes_ready, cleared)
        chain(cleared, etcd(current), deploy(current), deploy_wait_rollout(current), load_run)
        # cleanup is Airflow's teardown of the run: it runs whatever failed, once the lock was taken.
        chain([finalized, suite_complete], done.as_teardown(setups=lock))
    return dag


_files: dict[str, str] = {}  # suite name -> the file that defined it first
for _path in suite_files(suite_dag.suites_dir()):
    try:
        _suite = load_suite(_path)
    except SuiteError as exc:
        # One broken suite file must not hide the DAGs of the others; the error names file and key.
        log.error("suite file skipped: %s", exc)
        continue
    if _suite.name in _files:
        log.error("suite file skipped: %s: suite: %r is already the suite of %s; give each suite its own name",
                  _path, _suite.name, _files[_suite.name])
        continue
    _files[_suite.name] = str(_path)
    build_dag(_suite)
