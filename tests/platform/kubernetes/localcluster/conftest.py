"""The real single-node cluster, started once for this folder's tests (or used as it runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubexp.platform.kubernetes.localcluster.node import LocalCluster

KUBE_CONN_ID, SSH_CONN_ID = "kubexp_real_cluster", "kubexp_real_cluster_ssh"  # as test_cluster.py names them


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """`cluster up` (building what the cache lacks); `down` at the end unless it was running before.
    A machine has one such cluster: test sessions on the same machine take turns (a lock for the session)."""
    node = LocalCluster.from_env()
    with node.exclusive("tests"):
        yield from _session(node)


def _session(node: LocalCluster) -> Iterator[LocalCluster]:
    was_running = node.running()
    if not was_running:
        node.up()
    env = {f"AIRFLOW_CONN_{KUBE_CONN_ID.upper()}": json.dumps(
               {"conn_type": "kubernetes", "extra": {"kube_config_path": str(node.kubeconfig)}}),
           f"AIRFLOW_CONN_{SSH_CONN_ID.upper()}": node.sshd.connection_json()}
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            yield node
    finally:
        if not was_running and node.running():
            node.down()
