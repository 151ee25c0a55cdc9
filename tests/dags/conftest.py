"""An isolated AIRFLOW_HOME for parsing the DAG files (no metadata database is needed for that)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubexp.settings import REPO_ROOT

DAGS_DIR = REPO_ROOT / "dags"


@pytest.fixture(scope="session", autouse=True)
def airflow_home() -> Iterator[Path]:
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


@pytest.fixture(scope="session")
def parse_dags(airflow_home: Path):
    """Fills a DagBag from a folder (default dags/), as the dag-processor would."""

    def parse(folder: Path = DAGS_DIR):
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(folder))

    return parse
