"""Every suite file gives one importable DAG with the expected steps, retries, sensors, params and docs."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from kubexp import local_services
from kubexp.orchestration import suite_dag
from kubexp.settings import REPO_ROOT, SUITES_DIR, Ports
from kubexp.suite import load_suite, suite_files

STEPS = ("select", "preflight", "teardown", "etcd", "deploy", "load", "collect", "finalize")
SUITES = {load_suite(path).name: load_suite(path) for path in suite_files(SUITES_DIR)}


@pytest.fixture(scope="module")
def dagbag(parse_dags):
    return parse_dags()


def test_no_import_errors_and_one_dag_per_suite_file(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(suite_dag.dag_id(name) for name in SUITES)


@pytest.mark.parametrize("name", sorted(SUITES))
def test_steps_retries_and_sensors(dagbag, name: str) -> None:
    dag = dagbag.dags[suite_dag.dag_id(name)]
    ids = set(dag.task_ids)
    for step in STEPS:
        assert any(step in task_id for task_id in ids), f"no task for step {step}"
    assert {"nodes_check", "nodes_reboot", "nodes_wait_ready", "deploy_wait_rollout", "cleanup"} <= ids
    for task in dag.tasks:
        assert task.retries is not None and task.on_failure_callback, task.task_id
        if task.task_type.endswith("SensorOperator") or "Sensor" in type(task).__name__:
            assert task.mode == "poke", f"{task.task_id}: reschedule mode is unreliable in Airflow 3.3.2"
            assert task.timeout and task.timeout < timedelta(days=1).total_seconds()
    assert dag.get_task("load").retries == 0  # a broken-off load is never repeated on the same SUT
    from kubexp.preflight import PreflightError, ServiceUnavailable

    policy = dag.get_task("preflight").retry_policy
    assert policy.evaluate(PreflightError("dirty"), 1, 2).action.value == "fail"
    assert policy.evaluate(ServiceUnavailable("down"), 1, 2).action.value != "fail"
    assert dag.get_task("collect").retries >= 2  # storing is idempotent
    assert all(dag.get_task(t).retry_delay > timedelta(0) for t in ("select", "teardown", "etcd", "deploy"))


@pytest.mark.parametrize("name", sorted(SUITES))
def test_waiting_for_the_cluster_holds_no_worker_slot(dagbag, name: str) -> None:
    """Runs waiting for a busy target (up to hours) are deferred; only the lease holder's own short waits
    (nodes, rollout: minutes) poke in a worker slot."""
    dag = dagbag.dags[suite_dag.dag_id(name)]
    lock = dag.get_task("select_wait_for_cluster")
    assert callable(getattr(lock, "execute_complete", None)) and getattr(lock, "wait", None) == timedelta(hours=6)
    for task in dag.tasks:
        if getattr(task, "mode", None) == "poke":
            assert task.timeout <= timedelta(minutes=15).total_seconds(), task.task_id


@pytest.mark.parametrize("name", sorted(SUITES))
def test_branches_and_cleanup_teardown(dagbag, name: str) -> None:
    dag = dagbag.dags[suite_dag.dag_id(name)]
    assert dag.get_task("select").downstream_task_ids >= {"preflight", "suite_complete"}
    assert dag.get_task("nodes_check").downstream_task_ids >= {"nodes_reboot", "teardown"}
    cleanup = dag.get_task("cleanup")
    lock = dag.get_task("select_wait_for_cluster")
    assert cleanup.is_teardown and lock.is_setup
    assert {"finalize", "suite_complete", lock.task_id} <= cleanup.upstream_task_ids
    # everything but cleanup and the until_done tasks after it is upstream of it, so it waits for the whole run
    assert set(dag.task_ids) - {"cleanup", "until_done", "until_done_next"} == {
        t.task_id for t in cleanup.get_flat_relatives(upstream=True)}
    # until_done runs after cleanup whatever happened; it and the run it starts never decide the run's state
    decide, following = dag.get_task("until_done"), dag.get_task("until_done_next")
    assert decide.upstream_task_ids == {"cleanup"} and decide.trigger_rule == "all_done"
    assert decide.downstream_task_ids == {"until_done_next"} and following.trigger_dag_id == dag.dag_id
    assert following.logical_date is None and following.wait_for_completion is False
    leaves = {task.task_id for task in dag.tasks if not task.downstream_task_ids or
              all(dag.get_task(down).is_teardown for down in task.downstream_task_ids) and not task.is_teardown}
    assert leaves == {"finalize", "suite_complete", "until_done_next"}


@pytest.mark.parametrize("name", sorted(SUITES))
def test_one_slot_per_experiment_and_no_automatic_runs(dagbag, name: str) -> None:
    dag, suite = dagbag.dags[suite_dag.dag_id(name)], SUITES[name]
    experiments = len(suite.scenarios()) * suite.repetitions
    assert dag.catchup is False
    assert dag.start_date == suite_dag.SLOT_START
    assert (dag.end_date - dag.start_date).days + 1 == experiments
    assert dag.max_active_runs == 1


@pytest.mark.parametrize("name", sorted(SUITES))
def test_params_schema_and_docs(dagbag, name: str) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    dag, suite = dagbag.dags[suite_dag.dag_id(name)], SUITES[name]
    params = dag.params
    assert set(params.keys()) == {"scenario", "experiment", "dry_run", "overrides", "until_done", "max_failed_runs",
                                  "deadline"}
    ids = [s.id for s in suite.scenarios()]
    assert params.get_param("scenario").schema["enum"] == [None, *ids]

    def resolve(conf: dict) -> dict:
        merged = copy.deepcopy(params)
        merged.update(conf)
        return merged.validate()

    assert resolve({"scenario": ids[-1], "overrides": {"load": {"max_malformed_share": 0.1}}})["scenario"] == ids[-1]
    assert resolve({})["dry_run"] is False and resolve({})["until_done"] is False
    assert resolve({"until_done": True, "deadline": "2026-12-24T18:00:00Z"})["max_failed_runs"] == 3
    for bad in ({"scenario": "0" * 16}, {"experiment": "not-a-uuid"}, {"overrides": {"matrix": {}}},
                {"overrides": {"load": {"max_malformed_share": 2}}}, {"overrides": {"load": {"servers": 2}}},
                {"overrides": {"load": {"plan": "x.jmx"}}}, {"overrides": {"metrics": {"prometheus": []}}},
                {"dry_run": "yes"}, {"until_done": "yes"}, {"max_failed_runs": 0}, {"deadline": "tomorrow"}):
        with pytest.raises(ParamValidationError):
            resolve(bad)
    assert f"Suite `{suite.name}`" in dag.doc_md and "How to read progress" in dag.doc_md
    for scenario in suite.scenarios()[:50]:
        assert scenario.id in dag.doc_md


def test_broken_suite_file_does_not_hide_the_others(parse_dags, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(SUITES_DIR / "demo.yaml", tmp_path / "demo.yaml")
    (tmp_path / "broken.yaml").write_text("suite: broken\nplatform: moon\nrepetitions: 1\nmatrix: {}\n")
    monkeypatch.setenv("KUBEXP_SUITES_DIR", str(tmp_path))
    bag = parse_dags()
    assert bag.import_errors == {}
    assert bag.dag_ids == ["demo"]
    (tmp_path / "latin1.yaml").write_bytes(b"suite: latin\nplatform: local\ndescription: caf\xe9\n")
    shutil.copy(SUITES_DIR / "demo.yaml", tmp_path / "z-demo-again.yaml")  # a second suite named demo
    bag = parse_dags()
    assert bag.import_errors == {} and bag.dag_ids == ["demo"]
    assert bag.dags["demo"].fileloc and "z-demo-again" not in str(bag.dags["demo"].doc_md)


def test_a_task_process_builds_only_its_own_dag(parse_dags, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task process parses the DAG file to run one task of one DAG (Airflow's parsing context, the variable its
    task runner sets): only that DAG is built, and the first file naming a suite still defines it."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    for name in ("demo", "paper-etcd"):
        shutil.copy(SUITES_DIR / f"{name}.yaml", tmp_path / f"{name}.yaml")
    second = {**yaml.safe_load((SUITES_DIR / "demo.yaml").read_text()), "description": "the second demo"}
    (tmp_path / "z-demo-again.yaml").write_text(yaml.safe_dump(second))
    monkeypatch.setenv("KUBEXP_SUITES_DIR", str(tmp_path))
    assert sorted(parse_dags().dag_ids) == ["demo", "paper-etcd"]
    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, "demo")  # Airflow's context manager leaves it set
    bag = parse_dags()
    assert bag.import_errors == {} and bag.dag_ids == ["demo"]
    assert "the second demo" not in bag.dags["demo"].doc_md


def test_airflow_ruff_rules() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "--select", "AIR", "dags", "plugins"], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_parses_and_references_existing_files(tmp_path: Path) -> None:
    from kubexp.platform.kubernetes.config import DEFAULT_CONN_ID

    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    components = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                  "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for service, command in components.items():
        assert compose["services"][service]["command"] == command
        assert compose["services"][service]["shm_size"]  # results default to /dev/shm/kubexp
    assert {"postgres", "prometheus", "airflow-init"} <= set(compose["services"])
    secrets = {"airflow_admin_password": "a", "airflow_fernet_key": "f", "airflow_secret_key": "s",
               "airflow_jwt_secret": "j"}
    local_env = local_services.airflow_env(tmp_path, Ports(1, 2, 3), local_services.Postgres(tmp_path, 1, "p"), secrets)
    env = compose["services"]["airflow-scheduler"]["environment"]
    for key in ("AIRFLOW_CONN_KUBEXP_RESULTS", "KUBEXP_DATABASE_URL", "KUBEXP_PROMETHEUS_URL", "KUBEXP_HOME"):
        assert key in env and key in local_env
    assert env["KUBEXP_AIRFLOW_URL"].startswith("http://airflow-apiserver:") and "KUBEXP_AIRFLOW_PASSWORD" in env
    for variables in (env, local_env):  # the connection and the variable name one results database
        assert variables["AIRFLOW_CONN_KUBEXP_RESULTS"] == variables["KUBEXP_DATABASE_URL"]
    cluster_conn = f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}"  # the kubernetes platform's default connection
    example_env = (REPO_ROOT / "docker" / "example.env").read_text()
    assert cluster_conn in env and f"\n{cluster_conn}=" in example_env
    assert [key for key in env if key.startswith("AIRFLOW_CONN_")] == ["AIRFLOW_CONN_KUBEXP_RESULTS", cluster_conn]
    for text in (example_env, (REPO_ROOT / "docker-compose.yaml").read_text()):
        for doc in re.findall(r"docs/[\w./-]+\.md", text):
            assert (REPO_ROOT / doc).is_file(), f"{doc} is referenced but missing"
    for service in compose["services"].values():
        build = service.get("build")
        if build:
            assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"compose mounts missing {source}"
    mounted = [v.split(":")[1] for v in compose["services"]["airflow-scheduler"]["volumes"]]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].startswith(mounted[0])
    assert all((REPO_ROOT / sub).is_dir() for sub in ("dags", "plugins", "include"))

    # The init container's Python commands, run here with --help and the compose PYTHONPATH (the checkout's
    # mount point mapped back to this checkout): the module must exist and import.
    pythonpath = env["PYTHONPATH"].replace(mounted[0], str(REPO_ROOT))
    assert Path(pythonpath, "kubexp", "cli", "__main__.py").is_file()
    init = compose["services"]["airflow-init"]["command"][-1]
    python_lines = [line.split() for line in init.splitlines() if line.strip().startswith("python -m ")]
    assert python_lines, "airflow-init runs no `python -m` command"
    for _, _, module, *args in python_lines:
        for argv in (["--help"], [*args, "--help"]):
            result = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                                    cwd=tmp_path, env={**os.environ, "PYTHONPATH": pythonpath}, timeout=120)
            assert result.returncode == 0, f"python -m {module} {' '.join(argv)}:\n{result.stderr}"
            assert result.stdout.startswith(f"Usage: kubexp {' '.join(argv[:-1])}".rstrip())


def test_node_steps_form_the_nodes_group(dagbag) -> None:
    dag = dagbag.dags[suite_dag.dag_id("demo")]
    group = dag.task_group_dict["nodes"]
    assert set(group.children) == {"nodes_check", "nodes_reboot", "nodes_wait_ready"}


def _state_after(task, error: Exception) -> str:
    """What Airflow's task runner makes of `error` raised by `task` on its first of several tries: the same
    decision function a worker calls (retry policy first, then the retries left)."""
    from types import SimpleNamespace

    import structlog
    from airflow.sdk.execution_time.task_runner import _handle_current_task_failed

    ti = SimpleNamespace(task=task, try_number=1, rendered_map_index=None, end_date=None,
                         _failure_metrics_emitted=True,
                         _ti_context_from_server=SimpleNamespace(max_tries=max(task.retries, 1), should_retry=True))
    _, state = _handle_current_task_failed(ti, error, structlog.get_logger())
    return str(state.value)


@pytest.mark.parametrize("error", ["PreflightError", "ExperimentError", "SettingsError", "IncompleteData"])
def test_errors_that_need_a_fix_fail_every_step_without_a_retry(dagbag, error: str) -> None:
    from kubexp.experiment import ExperimentError, IncompleteData
    from kubexp.preflight import PreflightError, ServiceUnavailable
    from kubexp.settings import SettingsError

    raised = {"PreflightError": PreflightError, "ExperimentError": ExperimentError,
              "SettingsError": SettingsError, "IncompleteData": IncompleteData}[error]("something to fix")
    dag = dagbag.dags[suite_dag.dag_id("demo")]
    for task in dag.tasks:
        assert _state_after(task, raised) == "failed", task.task_id
    # A service that did not answer is worth the retry; so is any other error.
    assert _state_after(dag.get_task("preflight"), ServiceUnavailable("database down")) == "up_for_retry"
    assert _state_after(dag.get_task("collect"), RuntimeError("Prometheus busy")) == "up_for_retry"


def _interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's interpolation of ${NAME}, ${NAME:-default} and $$ (enough for our file)."""
    text = re.sub(r"(?<!\$)\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or (m[2] or ""), text)
    return text.replace("$$", "$")


def test_compose_binds_to_loopback_and_refuses_the_example_secrets(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published and all(_interpolate(port, {}).startswith("127.0.0.1:") for port in published)
    assert all(_interpolate(port, {"KUBEXP_BIND_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:") for port in published)
    init = compose["services"]["airflow-init"]
    example = dict(line.split("=", 1) for line in (REPO_ROOT / "docker" / "example.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    generated = {key: f"generated-{key.lower()}" for key in example}

    def run_init(dotenv: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env = {"PATH": str(tmp_path), "KUBEXP_AIRFLOW_PASSWORD": dotenv["KUBEXP_AIRFLOW_PASSWORD"],
               "KUBEXP_SECRETS": _interpolate(init["environment"]["KUBEXP_SECRETS"], dotenv)}
        script = _interpolate(init["command"][-1], dotenv)
        return subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=30)

    refused = run_init(example)
    assert refused.returncode == 1 and "KUBEXP_POSTGRES_PASSWORD in .env is empty or the example's change-me" \
        in refused.stderr
    one_left = run_init({**generated, "AIRFLOW_JWT_SECRET": "change-me"})
    assert one_left.returncode == 1 and "AIRFLOW_JWT_SECRET in .env" in one_left.stderr
    accepted = run_init(generated)  # goes on to write the password file (no /opt/kubexp-home here)
    assert "in .env is empty" not in accepted.stderr and "/opt/kubexp-home/airflow-passwords.json" in accepted.stderr


def test_dotenv_with_the_secrets_is_ignored_by_git() -> None:
    """Preflight refuses a dirty checkout: an untracked .env would make users commit their secrets."""
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO_ROOT, timeout=30)
    assert result.returncode == 0


@pytest.mark.parametrize("component", ["scheduler", "api-server"])
def test_scheduler_preloads_the_step_modules(component: str) -> None:
    """Airflow imports plugins/airflow_local_settings.py at start; in the scheduler, whose forked workers run the
    tasks, it loads kubexp's step modules (each task would import them again), and it exports no name."""
    path = REPO_ROOT / "plugins" / "airflow_local_settings.py"
    script = (f"import runpy, sys; sys.argv[1:] = [{component!r}]; settings = runpy.run_path({str(path)!r}); "
              "from kubexp.orchestration import preload; "
              "print(settings['__all__'], [name in sys.modules for name in preload.MODULES])")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert shown[0] == "[]" and set(" ".join(shown[1:]).strip("[]").split(", ")) == {str(component == "scheduler")}
