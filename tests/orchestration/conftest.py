"""The UI page's plugin imports Airflow: in an isolated AIRFLOW_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_airflow_home(airflow_home: Path) -> Path:
    return airflow_home
