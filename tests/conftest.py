"""Shared fixtures: a throwaway real PostgreSQL per test session, free ports, isolated state."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubexp.processes import free_port
from kubexp.services import Postgres


def reachable_tmpdir(prefix: str) -> Path:
    """A temp dir the `postgres` user can reach too (pytest's tmp_path is 0700 for root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


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
