"""Collected last in this folder (after test_cluster.py and test_dag_run.py): `cluster down` leaves nothing."""

from __future__ import annotations

import json
import subprocess

import psutil
import pytest
from click.testing import CliRunner

from kubexp.cli import main
from kubexp.platform.kubernetes.localcluster.node import BRIDGE, LocalCluster, filter_iptables_dump

pytestmark = pytest.mark.kube_real


def test_down_leaves_no_process_mount_interface_rule_or_container(local_cluster: LocalCluster) -> None:
    root = local_cluster.root
    local_cluster.down()
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"])
                 if any(str(root) in arg for arg in (p.info["cmdline"] or []))]
    assert leftovers == []
    assert [line for line in open("/proc/mounts") if f" {root}" in line] == []
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    for save in ("iptables-save", "ip6tables-save"):
        dump = subprocess.run([save], capture_output=True, text=True).stdout
        assert filter_iptables_dump(dump)[1] == [], save
        assert "KUBE-" not in dump and "CNI-" not in dump
    assert not root.exists()
    result = CliRunner().invoke(main, ["cluster", "status", "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["nodes_ready"] == 0
