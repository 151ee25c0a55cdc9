"""End-to-end fixtures: the real local services on free ports in a temp KUBEXP_HOME, short test suites.

The suites live in a temp folder that the DAG factory reads through KUBEXP_SUITES_DIR; every
process started here (PostgreSQL, Prometheus, Airflow, the platform's and JMeter's processes)
is stopped at the end of the session.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from e2e_harness import E2E, E2E_SUITES, suite_document
from scratch_dirs import reachable_tmpdir

from kubexp.processes import free_port

if TYPE_CHECKING:
    from kubexp.orchestration.airflow_api import AirflowClient


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """PostgreSQL and Prometheus of `kubexp services` on free ports; Airflow is started by the tests that need it."""
    from kubexp.local_services import LocalServices
    from kubexp.store import migrations

    root = reachable_tmpdir("kubexp-e2e-")
    home, suites_dir = root / "home", root / "suites"
    suites_dir.mkdir()
    results_dir = Path("/dev/shm") / f"kubexp-e2e-{uuid.uuid4().hex[:8]}"
    for name, repetitions in E2E_SUITES.items():
        (suites_dir / f"{name}.yaml").write_text(yaml.safe_dump(suite_document(name, repetitions, results_dir)))
    env = {"KUBEXP_HOME": str(home), "KUBEXP_SUITES_DIR": str(suites_dir),
           "KUBEXP_POSTGRES_PORT": str(free_port()), "KUBEXP_AIRFLOW_PORT": str(free_port()),
           "KUBEXP_PROMETHEUS_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        services = LocalServices.from_env()
        try:
            services.up(with_airflow=False, log=lambda line: None)
            airflow_env = services.airflow_env()
            for key in ("KUBEXP_DATABASE_URL", "KUBEXP_PROMETHEUS_URL"):
                env[key] = airflow_env[key]
                patch.setenv(key, airflow_env[key])
            migrations.upgrade(env["KUBEXP_DATABASE_URL"])
            yield E2E(home=home, suites_dir=suites_dir, env=env, results_dir=results_dir)
        finally:
            _stop_platform_leftovers(home)
            services.down(log=lambda line: None)
            shutil.rmtree(results_dir, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


def _stop_platform_leftovers(home: Path) -> None:
    """A failed test may leave the local platform or JMeter servers running: stop them by PID file."""
    from kubexp.processes import ManagedProcess

    for pidfile in home.rglob("pids/*.pid"):
        if pidfile.parent.parent == home:
            continue  # the services themselves: `down` stops them
        ManagedProcess(pidfile.stem, [], pidfile.parent.parent).stop(timeout=10)


@pytest.fixture(scope="module")
def airflow(e2e: E2E) -> Iterator[AirflowClient]:
    """api-server, scheduler, dag-processor and triggerer of `kubexp services up`, stopped after the module
    (the tests in other modules run without their load on the machine)."""
    from kubexp.local_services import LocalServices
    from kubexp.orchestration.airflow_api import AirflowClient

    services = LocalServices.from_env()
    services.up(log=lambda line: None)
    try:
        yield AirflowClient.from_env()
    finally:
        for proc in services.processes():
            if proc.name.startswith("airflow-"):
                proc.stop()
