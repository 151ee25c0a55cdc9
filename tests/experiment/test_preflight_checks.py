"""Preflight names every problem at once (uncommitted code, database, Prometheus, RAM disk, load model)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from kubexp import local_services, postconditions, preflight, settings
from kubexp.processes import free_port
from kubexp.suite import LoadSection, MetricsSection, load_suite, typed_section

SUITE = settings.SUITES_DIR / "demo.yaml"


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout with a framework file and app/, standing in for the repository."""
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "include.py").write_text("framework\n")
    (repo / "app" / "wsgi.py").write_text("app\n")
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    monkeypatch.setattr(settings, "REPO_ROOT", repo)
    return repo


def test_uncommitted_app_change_is_refused_unless_allowed(checkout: Path) -> None:
    suite = load_suite(SUITE)
    problems: list[str] = []
    facts = preflight.check_git(suite, problems)
    assert problems == [] and facts["framework"]["dirty"] is False and len(facts["commit"]) == 40
    (checkout / "app" / "wsgi.py").write_text("changed\n")
    facts = preflight.check_git(suite, problems)
    assert len(problems) == 1 and "uncommitted changes in the app (app/wsgi.py)" in problems[0]
    assert "allow_dirty: true" in problems[0] and facts["framework"]["dirty"] is False
    allowed: list[str] = []
    facts = preflight.check_git(dataclasses.replace(suite, allow_dirty=True), allowed)
    assert allowed == [] and facts["app"]["uncommitted"] == ["app/wsgi.py"]  # recorded, not refused


def test_every_problem_is_reported_in_one_error(checkout: Path, database_url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    (checkout / "include.py").write_text("changed\n")
    dead = f"http://127.0.0.1:{free_port()}"
    # A region the schema would refuse: preflight names it too (the model's own check).
    suite = dataclasses.replace(load_suite(SUITE), load=LoadSection(region="sideways",
                                                                    results_dir=str(tmp_path / "results")),
                                metrics=MetricsSection(prometheus=({"name": "gone", "url": dead},), retries=1))
    with pytest.raises(preflight.PreflightError) as raised:
        preflight.run_all(suite, tmp_path / "results" / "x", suite.scenarios()[0].params)
    message = str(raised.value)
    assert type(raised.value) is preflight.PreflightError  # something to fix: the DAG does not retry it
    assert "uncommitted changes in the framework (include.py)" in message
    assert "Prometheus 'gone'" in message and dead in message
    assert f"load results folder {tmp_path / 'results' / 'x'} is on ext4" in message
    assert "load.region='sideways'" in message
    assert "results database" not in message  # the database is fine


def test_only_services_that_did_not_answer_are_worth_a_retry(checkout: Path, database_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    root = Path("/dev/shm") / tmp_path.name  # the suite's private results root
    suite = dataclasses.replace(load_suite(SUITE), load=typed_section("load", {"results_dir": str(root)}, "test"),
                                metrics=typed_section("metrics", {"prometheus": [
                                    {"name": "down", "url": f"http://127.0.0.1:{free_port()}"}], "retries": 1}, "test"))
    try:
        with pytest.raises(preflight.ServiceUnavailable, match="Prometheus 'down'"):
            preflight.run_all(suite, root / "x", suite.scenarios()[0].params)
    finally:
        shutil.rmtree(root)


def test_facts_when_all_is_well(checkout: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    port = free_port()
    prometheus = local_services.prometheus_process(tmp_path / "prometheus", port)
    prometheus.start(timeout=30)
    root = Path("/dev/shm") / tmp_path.name  # the suite's private results root
    prometheus_entry = {"name": "p", "url": f"http://127.0.0.1:{port}"}
    suite = dataclasses.replace(
        load_suite(SUITE), metrics=typed_section("metrics", {"prometheus": [prometheus_entry]}, "test"),
        load=typed_section("load", {"servers": 1, "region": "underload", "expected_response_time_ms": 50,
                                    "results_dir": str(root)}, "test"))
    try:
        facts = preflight.run_all(suite, root / "x", suite.scenarios()[0].params)
    finally:
        prometheus.stop()
        shutil.rmtree(root)
    assert facts["results_dir"]["fstype"] == "tmpfs" and facts["database"]["server_version"].startswith("15")
    assert facts["git"]["framework"]["dirty"] is False and facts["prometheus"] == [
        {"name": "p", "url": f"http://127.0.0.1:{port}"}]
    [warning] = facts["warnings"]  # 4 workers with 50 ms think time fill 2 pods of 50 ms: rho = 1
    assert "suite claims underload" in warning and "rho = 1.00" in warning


def test_postconditions_name_what_is_missing() -> None:
    suite = load_suite(SUITE)
    params = suite.scenarios()[0].params
    good = {"requests": 100, "seconds": params["duration_s"], "rows": 100, "malformed": 0, "artifacts": 3,
            "metric_problems": []}
    assert postconditions.postconditions(suite, params, good) == []
    bad = {**good, "seconds": 5, "malformed": 10, "metric_problems": ["required metric 'x' returned no series"]}
    problems = postconditions.postconditions(suite, params, bad)
    assert problems == [f"load rows cover 5 s of {params['duration_s']} s",
                        f"10 malformed JTL lines of 110, more than the allowed 1.0% (load.max_malformed_share in "
                        f"{suite.path})", "required metric 'x' returned no series"]
    assert postconditions.postconditions(suite, params, {**good, "malformed": 1}) == []  # a cut-off last line


def test_postconditions_use_the_suites_malformed_limit() -> None:
    suite = load_suite(SUITE)
    params = suite.scenarios()[0].params
    collected = {"requests": 100, "seconds": params["duration_s"], "rows": 100, "malformed": 10, "artifacts": 3,
                 "metric_problems": []}
    tolerant = dataclasses.replace(suite, load=dataclasses.replace(suite.load, max_malformed_share=0.1))
    assert suite.load.max_malformed_share == 0.01  # the schema's default
    assert postconditions.postconditions(tolerant, params, collected) == []  # 10 of 110 = 9.1 %
    strict = dataclasses.replace(suite, load=dataclasses.replace(suite.load, max_malformed_share=0.05))
    assert postconditions.postconditions(strict, params, collected) == [
        f"10 malformed JTL lines of 110, more than the allowed 5.0% (load.max_malformed_share in {suite.path})"]


def _local_suite(tmp_path: Path, matrix: str) -> Path:
    path = tmp_path / "local-scaling.yaml"
    path.write_text(f"suite: local-scaling\nplatform: local\nrepetitions: 1\nmatrix: {matrix}\n")
    return path


def test_local_autoscaling_scenarios_are_settings_problems(tmp_path: Path) -> None:
    path = _local_suite(tmp_path, "{pods: [1, 2], pods_max: [2]}")
    suite = load_suite(path)
    first, second = suite.scenarios()
    problems = preflight.settings_problems(suite)
    assert problems == [f"{path}: scenario 0 ({first.id}): platform local: pods_max=2 > pods=1 needs autoscaling, "
                        f"which the local platform does not model; run this scenario on platform kubernetes or set "
                        f"pods_max = pods"]
    assert second.params["pods"] == second.params["pods_max"] == 2  # no autoscaling: fine
    assert preflight.settings_problems(load_suite(_local_suite(tmp_path, "{pods: [2]}"))) == []


def test_scenarios_the_load_step_would_refuse_are_settings_problems(tmp_path: Path) -> None:
    path = tmp_path / "uneven.yaml"
    path.write_text("suite: uneven\nplatform: local\nrepetitions: 1\nload: {servers: 2}\n"
                    "matrix: {workers: [3, 4], response_timeout_ms: [0]}\n")
    suite = load_suite(path)
    odd = next(s for s in suite.scenarios() if s.params["workers"] == 3)
    assert preflight.settings_problems(suite) == [
        f"{path}: scenario {odd.index} ({odd.id}): workers=3 cannot be divided equally among 2 JMeter servers; "
        f"choose a multiple of 2 (e.g. 2) or change load.servers"]  # and a response timeout of 0 is fine


def test_shipped_suites_have_no_settings_problems() -> None:
    for path in settings.SUITES_DIR.glob("*.yaml"):
        assert preflight.settings_problems(load_suite(path)) == [], path


def test_a_missing_results_connection_inside_airflow_is_a_problem_not_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEXP_DATABASE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_KUBEXP_RESULTS", raising=False)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "some-suite")  # as inside a task
    problems: list[str] = []
    unavailable: list[str] = []
    assert preflight.check_database(problems, unavailable) == {}
    assert unavailable == [] and len(problems) == 1 and "'kubexp_results' is not defined" in problems[0]


def test_remote_load_servers_on_a_platform_that_cannot_restart_them_are_a_problem() -> None:
    suite = dataclasses.replace(load_suite(SUITE), load=typed_section("load", {"servers": ["10.0.0.7:1099"]}, "test"))
    problems: list[str] = []
    unavailable: list[str] = []
    assert preflight.restart_load_servers(suite, problems, unavailable) == []
    assert unavailable == [] and len(problems) == 1
    assert "the local platform cannot restart remote load servers" in problems[0] and str(suite.path) in problems[0]

def test_a_saturated_generator_is_refused_only_when_the_suite_asks() -> None:
    from kubexp.load.saturation import assess

    suite = load_suite(SUITE)
    params = suite.scenarios()[0].params
    busy = assess(master_cpu_s=19.0, wall_s=10.0, servers=[], server_cpu_s={}, samples=400, duration_s=10,
                  intended_rate_per_s=None, cores=2)
    assert busy["saturated"] and busy["cpu_share"] == {"master": 0.95}
    collected = {"requests": 100, "seconds": params["duration_s"], "rows": 100, "malformed": 0, "artifacts": 3,
                 "metric_problems": [], "generator": busy}
    assert postconditions.postconditions(suite, params, collected) == []  # default: flagged in the report only
    strict = dataclasses.replace(suite, load=dataclasses.replace(suite.load, refuse_saturated_generator=True))
    assert postconditions.postconditions(strict, params, collected) == [
        "the load generator was the bottleneck (JMeter engine master used 95% of 2 cores (cap 90%)); "
        f"load.refuse_saturated_generator is set in {suite.path}"]
    calm = assess(master_cpu_s=5.0, wall_s=10.0, servers=[], server_cpu_s={}, samples=400, duration_s=10,
                  intended_rate_per_s=None, cores=2)
    assert postconditions.postconditions(strict, params, {**collected, "generator": calm}) == []


def test_generator_record_of_distributed_and_open_loop_runs() -> None:
    from kubexp.load.saturation import assess

    record = assess(master_cpu_s=30.0, wall_s=10.0, servers=["127.0.0.1:1", "10.0.0.5:1099"],
                    server_cpu_s={"127.0.0.1:1": 18.5}, samples=900, duration_s=10, intended_rate_per_s=100, cores=2)
    # The master only receives samples in distributed mode: its CPU is recorded, the senders are judged.
    assert record["cpu_share"] == {"master": 1.5, "127.0.0.1:1": 0.925, "10.0.0.5:1099": None}
    assert record["achieved_rate_per_s"] == 90.0 and record["saturated"]
    assert record["reasons"] == ["JMeter engine 127.0.0.1:1 used 92% of 2 cores (cap 90%)",
                                 "90.0 arrivals/s sent of 100 intended (minimum 95%)"]
