"""Real parts for the load tests: a JMeter home, the app under test, JMeter servers, a RAM-disk folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cropapp_server import running_app

from kubexp.load.home import jmeter_home
from kubexp.load.jmeter import LocalJMeterServers
from kubexp.load.rmi import ssl_properties
from kubexp.platform.base import Endpoint
from kubexp.platform.local import appserver


@pytest.fixture(scope="session")
def jmeter_home_dir() -> Iterator[Path]:
    """One JMeter home for the session, assembled in a temp run folder (KUBEXP_JMETER_HOME points at it)."""
    root = Path(tempfile.mkdtemp(prefix="kubexp-jmeter-home-"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBEXP_HOME", str(root))
        home = jmeter_home()
        patch.delenv("KUBEXP_HOME")
        patch.setenv("KUBEXP_JMETER_HOME", str(home))
        yield home
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cropapp() -> Iterator[Endpoint]:
    """The app under test (gunicorn, 2 workers) on a free loopback port."""
    state = Path(tempfile.mkdtemp(prefix="kubexp-load-app-"))
    try:
        with running_app("cropapp-load", state, workers=2) as app:
            yield Endpoint("127.0.0.1", app.ports[0], appserver.DEFAULT_CROP_PATH)
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def rmi_ssl() -> Iterator[Path]:
    """A run folder's RMI SSL keystore and properties (kubexp.load.rmi), for the servers and their master."""
    folder = Path(tempfile.mkdtemp(prefix="kubexp-jmeter-rmi-"))
    yield ssl_properties(folder / "jmeter-rmi")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def jmeter_servers(jmeter_home_dir: Path, rmi_ssl: Path) -> Iterator[list[str]]:
    """Two local JMeter servers on free loopback ports, RMI over SSL."""
    state = Path(tempfile.mkdtemp(prefix="kubexp-jmeter-servers-"))
    servers = LocalJMeterServers(2, state, rmi_ssl=rmi_ssl)
    try:
        yield servers.start()
    finally:
        servers.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def ram_results() -> Iterator[Path]:
    """A results folder on /dev/shm (tmpfs), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="kubexp-load-results-", dir="/dev/shm"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
