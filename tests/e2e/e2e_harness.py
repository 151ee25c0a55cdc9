"""The end-to-end harness: short test suites, dag.test() in a fresh process, store queries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from kubexp.settings import REPO_ROOT

if TYPE_CHECKING:
    from kubexp.orchestration.airflow_api import AirflowClient

RUNNER = Path(__file__).with_name("dag_test_runner.py")
# Short experiments: 6 s of load from 2 workers on one local JMeter server.
E2E_SUITES = {"e2e-dagtest": 2, "e2e-rest": 3, "e2e-report": 1, "e2e-gate": 3,  # e2e-dagtest: a dry run and a real one
              "e2e-until-done": 2, "e2e-abandon": 1}
# e2e-report varies the workers, so that its report and notebook have scenarios to compare. e2e-gate's
# candidates: a tenth of the CPU (really slower) and one millicore more (nothing differs). In e2e-abandon, a
# response timeout of 1 ms leaves most requests without an HTTP response: finalize refuses every attempt.
E2E_MATRICES = {"e2e-report": {"workers": [2, 4]}, "e2e-gate": {"cpu_limit_millicores": [1000, 1001, 100]},
                "e2e-abandon": {"response_timeout_ms": [10000, 1]}}
# 3 experiments per level give a 90 % interval of a ratio (the widest pairwise range covers 1 - 2/20).
E2E_EXTRA = {"e2e-gate": {"analysis": {"confidence": 0.9},
                          "slo": {"throughput": {"figure": "successes_per_s_median", "min": 1},
                                  "no-oom": {"figure": "oom_kills", "max": 0}}},
             "e2e-rest": {"slo": {"throughput": {"figure": "successes_per_s_median", "min": 1}}},
             "e2e-abandon": {"max_attempts": 2}}


def suite_document(name: str, repetitions: int, results_dir: Path) -> dict[str, Any]:
    matrix = E2E_MATRICES.get(name, {"workers": [2]})
    defaults = {"pods": 1, "workers": 2, "duration_s": 6, "think_time_ms": 50, "memory_limit_mib": 256,
                "cpu_limit_millicores": 1000}
    return {
        "suite": name, "description": f"end-to-end test suite {name}", "platform": "local",
        "cluster": "e2e-local", "repetitions": repetitions, "seed": 7,
        "allow_dirty": True,  # the test runs in a working tree others are editing
        "defaults": {key: value for key, value in defaults.items() if key not in matrix},
        "matrix": matrix,
        "load": {"servers": 1, "results_dir": str(results_dir)},
        "local": {"health_check_interval_s": 1, "fingerprint_puts": 50, "fingerprint_max_s": 5},
        **E2E_EXTRA.get(name, {}),
    }


@dataclass
class E2E:
    home: Path
    suites_dir: Path
    env: dict[str, str]  # the KUBEXP_* environment of the services (also set in os.environ)
    results_dir: Path  # the suites' load.results_dir: unique to this session

    @property
    def database_url(self) -> str:
        return self.env["KUBEXP_DATABASE_URL"]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return list(conn.execute(sql, args).fetchall())

    def task_log(self, dag_id: str, run_id: str, task_id: str, events: int = 40) -> str:
        """The last events of a task's log under the local services' Airflow (latest try)."""
        folder = self.home / "airflow" / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        tries = sorted(folder.glob("attempt=*.log"))
        if not tries:
            return f"(no log in {folder})"
        lines = []
        for line in tries[-1].read_text().splitlines()[-events:]:
            try:
                entry = json.loads(line)
                lines.append(f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}"
                             + (f"\n{entry['error_detail']}" if "error_detail" in entry else ""))
            except ValueError:
                lines.append(line)
        return "\n".join(lines)

    def dag_test(self, dag_id: str, *slots: int | str, timeout: float = 300) -> list[dict[str, Any]]:
        """Run slots ("N" or "N:{conf json}") of a DAG with dag.test() in a fresh process; the runs' results."""
        proc = self.start_dag_test(dag_id, *slots)
        out, _ = proc.communicate(timeout=timeout)
        (self.home / f"dag-test-{dag_id}.log").write_text(out)  # task logs, for a failing assertion
        return parse_results(proc, out)

    def failed_tasks_log(self, dag_id: str, lines: int = 80) -> str:
        """The tail of the runner output around the first failure, to explain an assertion."""
        text = (self.home / f"dag-test-{dag_id}.log").read_text().splitlines()
        first = next((i for i, line in enumerate(text) if "Traceback" in line or "ERROR" in line), len(text) - lines)
        return "\n".join(text[max(0, first - 10):first + lines])

    def start_dag_test(self, dag_id: str, *slots: int | str) -> subprocess.Popen[str]:
        airflow_home = self.home / "airflow-dag-test"
        airflow_home.mkdir(exist_ok=True)
        env = {**os.environ, **self.env, "AIRFLOW_HOME": str(airflow_home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
               "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW_CONN_KUBEXP_RESULTS": self.database_url}
        return subprocess.Popen([sys.executable, str(RUNNER), dag_id, *map(str, slots)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.home)


def parse_results(proc: subprocess.Popen[str], out: str) -> list[dict[str, Any]]:
    results = [json.loads(line.split("KUBEXP_RESULT ", 1)[1]) for line in out.splitlines()
               if line.startswith("KUBEXP_RESULT ")]
    assert proc.returncode == 0, out[-6000:]
    return results


KUBEXP = str(Path(sys.executable).parent / "kubexp")


def kubexp(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEXP, *args], capture_output=True, text=True, timeout=timeout, env=os.environ)


def load_task_process(e2e: E2E, suite: str, timeout: float = 180) -> psutil.Process:
    """The task process running `load` of a suite: the parent of the JMeter master writing its JTL into
    this session's results folder (never another test session's JMeter on the same machine)."""
    deadline = time.monotonic() + timeout
    ours = f"{e2e.results_dir}/{suite}/"
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if "java" in (proc.info["name"] or "") and "ApacheJMeter" in cmdline and ours in cmdline \
                    and " -n " in f" {cmdline} " and " -s " not in f" {cmdline} ":
                time.sleep(2)  # mid-load: the JMeter master has sent requests for a while
                return proc.parent()
        time.sleep(0.2)
    raise AssertionError(f"no JMeter master of suite {suite} appeared within {timeout:.0f} s")


def explain(e2e: E2E, airflow: AirflowClient, dag_id: str, run_id: str) -> str:
    """Task states of a run and the end of each failed task's log, for an assertion message."""
    states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(dag_id, run_id)}
    text = [str(states)]
    for task_id, state in states.items():
        if state == "failed":
            text.append(f"--- {task_id}:\n" + e2e.task_log(dag_id, run_id, task_id))
    return "\n".join(text)
