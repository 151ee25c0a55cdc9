"""One DAG per suite file in the suites folder; one DAG run = one experiment.

The tasks are thin: each is one call into `kubexp.experiment`, which holds the step logic and is
tested without a scheduler. What lives here is only Airflow's part: order, branches, sensors,
retries, params, the failure callback and the always-running cleanup.

Suites folder: KUBEXP_SUITES_DIR, else include/suites. Adding a suite file adds a DAG.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import (
    DAG,
    ExceptionRetryPolicy,
    PokeReturnValue,
    RetryAction,
    RetryRule,
    TaskGroup,
    TriggerRule,
    chain,
    get_current_context,
    get_parsing_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

from kubexp import experiment
from kubexp.experiment import ExperimentError, IncompleteData
from kubexp.load.profiles import settle_s_for
from kubexp.orchestration import suite_dag
from kubexp.orchestration.airflow_api import AirflowApiError, paused_since, write_note
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
# They also stop a chain of runs until done. Data that finalize refused (IncompleteData) fail at once too,
# as retrying finalize cannot help, but a later run reattempts the experiment: a chain goes on.
NO_RETRY: tuple[type[Exception], ...] = (PreflightError, ExperimentError, SettingsError)
NEEDS_A_FIX = ExceptionRetryPolicy(rules=[RetryRule(
    exception=[*NO_RETRY, IncompleteData], action=RetryAction.FAIL, match_subclasses=False,
    reason="needs a fix, not a retry")])
CHAIN_TASKS = ("until_done", "until_done_next")
NODES_READY_WAIT = timedelta(minutes=15)
ROLLOUT_WAIT = timedelta(minutes=10)
# A poke is a few local requests (HAProxy's stats, one crop, Prometheus' targets): every 0.5 s the run goes on
# within half a second of the SUT being ready and scraped (at 2 s, 1 s per experiment was lost on average).
ROLLOUT_POKE_S = 0.5


def _close_attempt_on_failure(context: dict[str, Any]) -> None:
    """Final failure of any step: the attempt is closed as failed with the step and its error."""
    ti = context["ti"]
    current = ti.xcom_pull(task_ids="select", key="experiment")
    experiment.fail(current, f"{ti.task_id}: {context.get('exception')!s}")


def _marks_needs_fix(step: Callable[..., Any]) -> Callable[..., Any]:
    """A step that raises one of NO_RETRY (exactly) leaves it in its XCom `needs_fix` before it fails, so that
    the run's last branch stops a chain of runs (the failure callback runs only after the task's state is sent)."""
    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except NO_RETRY as exc:
            if type(exc) in NO_RETRY:
                get_current_context()["ti"].xcom_push(key="needs_fix", value=f"{type(exc).__name__}: {exc}"[:500])
            raise
    return run


def _run_params(params: dict[str, Any], dag_run: Any) -> dict[str, Any]:
    """The run's params with `chain`, the id of the chain a run until done continues (set by the previous run)."""
    return {**params, "chain": (dag_run.conf or {}).get("chain")}


def _paused(dag_run: Any, ti: Any) -> bool:
    """Whether the DAG is paused, or was paused while this run went on: Airflow schedules no task of a paused
    DAG, so a run paused midway reaches its last branch only once unpaused, and that pause still counts."""
    if ti.get_dag(dag_run.dag_id).is_paused:
        return True
    try:
        return paused_since(dag_run.dag_id, dag_run.start_date)
    except (AirflowApiError, SettingsError, OSError, KeyError) as exc:
        log.warning("the audit log could not say whether the DAG was paused during this run (%s); "
                    "it is not paused now, so the chain goes on", exc)
        return False


class ContinueChain(TriggerDagRunOperator):
    """Start the next run of the chain that the `until_done` branch decided on (run id, conf and note in its XCom)."""

    def execute(self, context: Any) -> Any:
        following = context["ti"].xcom_pull(task_ids="until_done", key="next_run")
        self.trigger_run_id, self.conf, self.note = following["run_id"], following["conf"], following["note"]
        return super().execute(context)


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
        @_marks_needs_fix
        def select(params: dict[str, Any], dag_run=None, ti=None) -> str:
            current = experiment.select(suite.path, experiment.RunRef.of(dag_run, ti), _run_params(params, dag_run))
            ti.xcom_push(key="experiment", value=current.to_xcom() if current else None)
            return "preflight" if current else "suite_complete"

        suite_complete = EmptyOperator(task_id="suite_complete")

        @task(task_id="preflight", retries=1, retry_delay=timedelta(seconds=30))
        @_marks_needs_fix
        def preflight(current: dict[str, Any]) -> None:
            facts = experiment.preflight(current)
            if current["dry_run"]:
                raise AirflowSkipException(f"dry run: preflight passed, {facts['plan']}; nothing was changed")

        @task.branch(task_id="nodes_check")
        @_marks_needs_fix
        def nodes_check(current: dict[str, Any]) -> str:
            return "teardown" if not experiment.nodes_not_ready(current) else "nodes_reboot"

        @task(task_id="nodes_reboot", retries=1, retry_delay=timedelta(minutes=1))
        @_marks_needs_fix
        def nodes_reboot(current: dict[str, Any]) -> None:
            experiment.reboot_nodes(current)

        @task.sensor(task_id="nodes_wait_ready", mode="poke", poke_interval=10,
                     timeout=NODES_READY_WAIT.total_seconds(), retries=0)
        @_marks_needs_fix
        def nodes_wait_ready(current: dict[str, Any]) -> PokeReturnValue:
            return PokeReturnValue(is_done=not experiment.nodes_not_ready(current))

        # Reached straight from nodes_check or after a reboot, so one upstream is always skipped.
        # That rule also holds when preflight skipped a dry run (select succeeded): hence the check.
        @task(task_id="teardown", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        @_marks_needs_fix
        def teardown(current: dict[str, Any]) -> None:
            if current["dry_run"]:
                raise AirflowSkipException("dry run: the SUT is left alone")
            experiment.teardown(current)

        @task(task_id="etcd")
        @_marks_needs_fix
        def etcd(current: dict[str, Any]) -> None:
            experiment.configure_etcd(current)

        # Also restarts the load servers: their JVMs start within the app's readiness period.
        @task(task_id="deploy")
        @_marks_needs_fix
        def deploy(current: dict[str, Any]) -> dict[str, Any]:
            return experiment.deploy(current)

        @task.sensor(task_id="deploy_wait_rollout", mode="poke", poke_interval=ROLLOUT_POKE_S,
                     timeout=ROLLOUT_WAIT.total_seconds(), retries=0)
        @_marks_needs_fix
        def deploy_wait_rollout(current: dict[str, Any]) -> PokeReturnValue:
            return PokeReturnValue(is_done=experiment.rollout_ready(current))

        # No retry: a load that broke off has already stressed the SUT, so a second try on it
        # would not be a clean repetition; a later run reattempts the experiment from scratch.
        @task(task_id="load", retries=0, execution_timeout=longest_load + timedelta(minutes=15))
        @_marks_needs_fix
        def load(current: dict[str, Any], deployed: dict[str, Any]) -> dict[str, Any]:
            return experiment.run_load(current, deployed)

        # Storing is idempotent (one transaction that replaces the experiment's rows), so retrying is safe.
        @task(task_id="collect", retries=3, retry_delay=timedelta(seconds=20))
        @_marks_needs_fix
        def collect(current: dict[str, Any], load_run: dict[str, Any]) -> dict[str, Any]:
            return experiment.collect(current, load_run)

        @task(task_id="finalize")
        @_marks_needs_fix
        def finalize(current: dict[str, Any], collected: dict[str, Any]) -> None:
            experiment.finalize(current, collected)

        @task(task_id="cleanup", retries=2, retry_delay=timedelta(seconds=10))
        def cleanup(dag_run=None, ti=None) -> None:
            # Pulled here rather than passed in: cleanup must also run when select failed before pushing.
            states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
            experiment.cleanup(ti.xcom_pull(task_ids="select", key="experiment"), suite.path,
                               dag_run.dag_id, dag_run.run_id,
                               failed_steps=sorted(task for task, state in states.items() if state == "failed"))

        # After cleanup, whatever happened: a lease the killed lease sensor left is released (cleanup, its
        # teardown, did not run). Runs until done: then a branch records the run in its chain and either
        # starts the chain's next run (the DAG's max_active_runs=1 starts it once this run ended) or stops the
        # chain, saying why in the run's note. Both are leaves that never fail the run for the experiment's sake:
        # finalize and suite_complete still decide the run's state.
        @task.branch(task_id="until_done", trigger_rule=TriggerRule.ALL_DONE, retries=3,
                     retry_delay=timedelta(seconds=20))
        def until_done(params: dict[str, Any], dag_run=None, ti=None) -> str | None:
            states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id]).get(dag_run.run_id, {})
            if states.get("cleanup") not in ("success", "failed"):  # its setup, the lease sensor, did not succeed
                experiment.release_unused_lease(suite.path, dag_run.dag_id, dag_run.run_id)
            failed = sorted(task_id for task_id, state in states.items()
                            if state in ("failed", "upstream_failed") and task_id not in CHAIN_TASKS)
            needs_fix = next(filter(None, (ti.xcom_pull(task_ids=task_id, key="needs_fix") for task_id in failed)),
                             None)
            run_params = _run_params(params, dag_run)
            decided = experiment.until_done(suite.path, experiment.RunRef.of(dag_run, ti), run_params,
                                            failed=bool(failed), needs_fix=needs_fix,
                                            paused=bool(run_params.get("until_done")) and _paused(dag_run, ti))
            if decided is None:
                return None
            decision, conf = decided
            write_note(dag_run.dag_id, dag_run.run_id, decision.note)
            if decision.next_run_id is None:
                return None
            ti.xcom_push(key="next_run", value={
                "run_id": decision.next_run_id, "conf": conf,
                "note": f"until_done chain {conf['chain']}, run {decision.number + 1}: started by {dag_run.run_id}"})
            return "until_done_next"

        next_run = ContinueChain(task_id="until_done_next", trigger_dag_id=suite_dag.dag_id(suite.name),
                                 logical_date=None, skip_when_already_exists=True, wait_for_completion=False,
                                 openlineage_inject_parent_info=False, retries=3, retry_delay=timedelta(seconds=20))

        chosen = select()
        current = chosen["experiment"]
        checked = preflight(current)
        # One group in the graph; the task ids stay nodes_check, nodes_reboot, nodes_wait_ready.
        with TaskGroup("nodes", prefix_group_id=False, tooltip="every node Ready, else reboot it and wait"):
            nodes = nodes_check(current)
            rebooted = nodes_reboot(current)
            nodes_ready = nodes_wait_ready(current)
        cleared = teardown(current)
        deployed = deploy(current)
        load_run = load(current, deployed)
        finalized = finalize(current, collect(current, load_run))
        done = cleanup()

        chain(lock, chosen, [checked, suite_complete])
        chain(checked, nodes, [rebooted, cleared])
        chain(rebooted, nodes_ready, cleared)
        chain(cleared, etcd(current), deployed, deploy_wait_rollout(current), load_run)
        # cleanup is Airflow's teardown of the run: it runs whatever failed, once the lock was taken.
        chain([finalized, suite_complete], done.as_teardown(setups=lock))
        chain(done, until_done(), next_run)
    return dag


_files: dict[str, str] = {}  # suite name -> the file that defined it first
# A task process parses this file only to run one task: it builds that DAG alone (every suite file is still
# read, so the first file naming a suite wins as in the dag-processor). None in the dag-processor: all DAGs.
_wanted = get_parsing_context().dag_id
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
    if _wanted in (None, suite_dag.dag_id(_suite.name)):
        build_dag(_suite)
