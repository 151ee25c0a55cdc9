"""Shared fixtures: a throwaway real PostgreSQL per test session, free ports, isolated state."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scratch_dirs import reachable_tmpdir

from kubexp.local_services import Postgres
from kubexp.processes import free_port


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A real PostgreSQL 15 on a free port, stopped and removed at the end of the session."""
    root = reachable_tmpdir("kubexp-pg-")
    server = Postgres(root=root, port=free_port(), password=secrets.token_urlsafe(12))
    server.start()
    yield server
    server.process().stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: Postgres, request: pytest.FixtureRequest) -> str:
    """URL of a fresh, empty database for one test."""
    name = "t_" + secrets.token_hex(6)
    postgres_server.create_databases(name)
    return postgres_server.url(name)


@pytest.fixture
def kubexp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated run folder for code that reads KUBEXP_HOME."""
    home = tmp_path / "kubexp-home"
    monkeypatch.setenv("KUBEXP_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """An isolated AIRFLOW_HOME (no metadata database) for code that imports or asks Airflow."""
    saved = {key: os.environ.get(key) for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__LOAD_EXAMPLES")}
    with tempfile.TemporaryDirectory(prefix="kubexp-airflow-home-") as home:
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        yield Path(home)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
