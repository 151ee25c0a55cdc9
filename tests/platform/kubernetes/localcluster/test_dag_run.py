"""One experiment of the shipped suite kube-local as a whole DAG run through the real Airflow scheduler,
on the real cluster: per-second load rows, metric series from the cluster, Kubernetes events."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from scratch_dirs import reachable_tmpdir

from kubexp import settings
from kubexp.local_services import LocalServices
from kubexp.orchestration.airflow_api import AirflowClient
from kubexp.platform.kubernetes.localcluster.integration import register_cluster
from kubexp.platform.kubernetes.localcluster.node import LocalCluster
from kubexp.processes import free_port

pytestmark = pytest.mark.kube_real


@pytest.fixture(scope="module")
def services(local_cluster: LocalCluster) -> Iterator[dict[str, str]]:
    """The local services in a temp run folder, told about the cluster before they start (as `cluster up`
    does), with the shipped kube-local suite shortened to 15 s of load."""
    root = reachable_tmpdir("kubexp-kube-local-")
    home, suites = root / "home", root / "suites"
    suites.mkdir()
    suite = yaml.safe_load((settings.SUITES_DIR / "kube-local.yaml").read_text())
    suite["defaults"]["duration_s"] = 15
    suite["allow_dirty"] = True  # the test runs in a working tree others are editing
    results = Path("/dev/shm") / root.name  # preflight wants the JTL on a RAM disk
    suite["load"]["results_dir"] = str(results)
    (suites / "kube-local.yaml").write_text(yaml.safe_dump(suite))
    env = {"KUBEXP_HOME": str(home), "KUBEXP_SUITES_DIR": str(suites), "KUBEXP_POSTGRES_PORT": str(free_port()),
           "KUBEXP_AIRFLOW_PORT": str(free_port()), "KUBEXP_PROMETHEUS_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        register_cluster(local_cluster, run_dir=home)
        local = LocalServices.from_env()
        try:
            local.up(log=lambda line: None)
            yield {**env, "database_url": local.airflow_env()["KUBEXP_DATABASE_URL"]}
        finally:
            local.down(log=lambda line: None)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(results, ignore_errors=True)


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


def test_one_kube_local_experiment_runs_through_the_scheduler_and_finishes(services: dict[str, str]) -> None:
    airflow = AirflowClient.from_env()
    airflow.wait_for_dag("kube-local", timeout_s=180)
    airflow.trigger("kube-local", "kube-local-test")
    run = airflow.wait_for_run("kube-local", "kube-local-test", timeout_s=900)
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances("kube-local", "kube-local-test")}
    assert run["state"] == "success", f"{states}\n{_failed_logs(services, states)}"
    url = services["database_url"]
    [(experiment_id, params)] = query(url, "SELECT e.id, s.params FROM experiment e JOIN scenario s "
                                           "ON s.id = e.scenario_id WHERE e.suite = 'kube-local' "
                                           "AND e.status = 'finished'")
    [(seconds, requests)] = query(url, "SELECT count(*), sum(requests) FROM load_second WHERE experiment_id = %s",
                                  experiment_id)
    assert seconds >= 10 and requests > 0
    # Metric series of the cluster itself (cAdvisor through the kubelet, the API server, etcd), on the same axis.
    series = {name for (name,) in query(url, "SELECT DISTINCT name FROM metric_series WHERE experiment_id = %s "
                                             "AND points > 0", experiment_id)}
    assert {"pod_cpu_cores", "apiserver_request_mean_seconds", "etcd_wal_fsync_mean_seconds"} <= series, series
    events = query(url, "SELECT kind, t FROM platform_event WHERE experiment_id = %s AND source = 'kubernetes'",
                   experiment_id)
    assert events, "no Kubernetes events on the time axis"
    storage = query(url, "SELECT p.facts -> 'etcd' ->> 'storage' FROM provenance p JOIN attempt a "
                         "ON a.id = p.attempt_id WHERE a.experiment_id = %s AND a.outcome = 'succeeded'",
                    experiment_id)
    assert storage == [(params["etcd_storage"],)], storage


def _failed_logs(services: dict[str, str], states: dict[str, str]) -> str:
    logs = Path(services["KUBEXP_HOME"]) / "airflow" / "logs" / "dag_id=kube-local" / "run_id=kube-local-test"
    text = []
    for task_id, state in states.items():
        if state == "failed":
            for log in sorted((logs / f"task_id={task_id}").glob("*.log"))[-1:]:
                text.append(f"--- {task_id}\n" + "\n".join(log.read_text().splitlines()[-30:]))
    return "\n".join(text)
