"""Parsing the DAG files in an isolated AIRFLOW_HOME (no metadata database is needed for that)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubexp.settings import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"


@pytest.fixture(scope="session", autouse=True)
def _isolated_airflow_home(airflow_home: Path) -> Path:
    return airflow_home


@pytest.fixture(scope="session")
def parse_dags(airflow_home: Path):
    """Fills a DagBag from a folder (default dags/), as the dag-processor would."""

    def parse(folder: Path = DAGS_DIR):
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(folder))

    return parse
