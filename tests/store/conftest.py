"""Store fixtures: a migrated fresh database per test, and a small suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from store_fixtures import make_suite

from kubexp.store import db, migrations
from kubexp.suite import Suite


@pytest.fixture
def store_url(database_url: str) -> str:
    migrations.upgrade(database_url)
    return database_url


@pytest.fixture
def conn(store_url: str) -> Iterator[psycopg.Connection]:
    with db.connect(store_url) as connection:
        yield connection


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return make_suite(tmp_path)
