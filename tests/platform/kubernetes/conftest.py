"""Fixtures for the real-cluster path: a real sshd and etcd, a kmock Kubernetes, a Keystone + Nova fake."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_node import EtcdNode, start_etcd_node
from fake_kube import FakeKubernetes
from fake_openstack import FakeOpenStack
from fake_tools import KUBE_CONN_ID, SSH_CONN_ID, FakeTool, SanityServer
from loopback_sshd import running_sshd

from kubexp.platform.kubernetes.localcluster.sshd import Sshd


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """An empty folder: the injection tests hide `touch <trap>/...` in values and expect it to stay empty."""
    folder = tmp_path / "trap"
    folder.mkdir()
    return folder


@pytest.fixture
def ssh_conn(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> str:
    """Id of an Airflow SSH connection (from the environment) to the loopback sshd."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{SSH_CONN_ID.upper()}", sshd.connection_json())
    return SSH_CONN_ID


@pytest.fixture
def etcd_node(tmp_path: Path) -> Iterator[EtcdNode]:
    """A real etcd on a disk folder, with a RAM disk folder beside it (mounted by the code under test)."""
    disk_root = Path(tempfile.mkdtemp(prefix="kubexp-etcd-disk-", dir="/var/tmp"))
    try:
        node = start_etcd_node(tmp_path / "node", disk_root)
        try:
            yield node
        finally:
            node.stop()
    finally:
        shutil.rmtree(disk_root, ignore_errors=True)


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKubernetes]:
    """kmock's Kubernetes emulator on 127.0.0.1, reachable through an Airflow Kubernetes connection."""
    with FakeKubernetes() as fake:
        monkeypatch.setenv(f"AIRFLOW_CONN_{KUBE_CONN_ID.upper()}", fake.connection_json(namespace="default"))
        yield fake


@pytest.fixture
def openstack_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenStack]:
    """Keystone v3 + Nova fake, named `kx-test` in a clouds.yaml that OS_CLIENT_CONFIG_FILE points at."""
    with FakeOpenStack() as cloud:
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(cloud.write_clouds_yaml(tmp_path / "clouds.yaml")))
        yield cloud


@pytest.fixture
def sanity_server() -> Iterator[SanityServer]:
    server = SanityServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def fake_istioctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTool:
    """An executable `istioctl` (fake_istioctl.py) that logs its calls and changes the fake cluster."""
    tool = FakeTool(path=tmp_path / "bin" / "istioctl", log=tmp_path / "istioctl-calls.jsonl")
    tool.path.parent.mkdir()
    script = Path(__file__).with_name("fake_istioctl.py")
    tool.path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))} "$@"\n')
    tool.path.chmod(0o755)
    monkeypatch.setenv("KX_FAKE_TOOL_LOG", str(tool.log))
    monkeypatch.setenv("KX_FAKE_ISTIO_VERSION", "1.22.3")
    return tool
