"""etcd's log fetched from a cluster's members over SSH (a real loopback sshd), and the sources a suite names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from loopback_sshd import running_sshd

from kubexp.collect.etcd_log import parse
from kubexp.platform.kubernetes import etcd_log
from kubexp.platform.kubernetes.etcd_log import EtcdLogError, EtcdLogSource
from kubexp.records import Window
from kubexp.suite import load_suite

DATA = Path(__file__).parents[2] / "collect" / "data" / "etcd"  # logs captured from etcd 3.4 and 3.5
CAPTURED_AT = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ssh_connection() -> Iterator[str]:
    with running_sshd("kubexp-collect-sshd-") as sshd:
        yield sshd.connection_json()


@pytest.fixture
def ssh_conn_id(ssh_connection: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_KUBEXP_ETCD_NODE", ssh_connection)
    return "kubexp_etcd_node"


@pytest.mark.slow
def test_log_file_over_ssh(ssh_conn_id: str, tmp_path: Path) -> None:
    path = DATA / "etcd-3.5-leader-change.log"
    start, end = datetime(2026, 11, 28, 17, 18, tzinfo=UTC), datetime(2026, 11, 28, 17, 18, 10, tzinfo=UTC)
    sources = [EtcdLogSource("m1", ssh_conn_id, journal_unit=None, log_file=str(path)),
               EtcdLogSource("m1-again", ssh_conn_id, journal_unit=None, log_file=str(path), max_bytes=1 << 30)]
    collected = etcd_log.RemoteEtcdLog(sources).collect(Window(start, start, end, tmp_path))

    expected = parse(path.read_text(), start, "m1", start=start, end=end)
    assert expected and [e for e in collected.events if e.obj == "m1"] == expected
    assert [a.path for a in collected.artifacts] == [str(tmp_path / "etcd-m1.log.gz"),
                                                     str(tmp_path / "etcd-m1-again.log.gz")]
    assert collected.artifacts[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [e.at for e in collected.events] == sorted(e.at for e in collected.events)


@pytest.mark.slow
def test_journal_over_ssh_runs_journalctl_for_the_window(ssh_conn_id: str, tmp_path: Path) -> None:
    start = datetime(2026, 11, 28, 17, 18, 0, 700000, tzinfo=UTC)
    source = EtcdLogSource("m1", ssh_conn_id, journal_unit="etcd")
    assert source.command(start, start + timedelta(seconds=60)) == [
        "journalctl", "--unit", "etcd", "--since", "2026-11-28 17:17:59 UTC", "--until", "2026-11-28 17:19:01 UTC",
        "--output", "short-iso-precise", "--utc", "--no-pager", "--quiet"]
    # This machine has journalctl but no systemd journal: the command runs and finds nothing.
    collected = etcd_log.RemoteEtcdLog([source]).collect(Window(start, start, start + timedelta(seconds=60), tmp_path))
    assert collected.events == [] and len(collected.artifacts) == 1


@pytest.mark.slow
def test_failing_remote_command_names_member_connection_and_output(ssh_conn_id: str, tmp_path: Path) -> None:
    source = EtcdLogSource("m2", ssh_conn_id, journal_unit=None, log_file="/var/log/no such; etcd.log")
    with pytest.raises(EtcdLogError) as failure:
        etcd_log.RemoteEtcdLog([source]).collect(Window(CAPTURED_AT, CAPTURED_AT, CAPTURED_AT, tmp_path))
    message = str(failure.value)
    assert "etcd member 'm2' via SSH connection 'kubexp_etcd_node'" in message
    assert "tail -c 67108864 -- '/var/log/no such; etcd.log'` exited with 1" in message
    assert "No such file or directory" in message


def test_sources_from_the_suite(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    base = "suite: s\nplatform: kubernetes\nrepetitions: 1\nmatrix: {workers: [1]}\n"
    path.write_text(base + "kubernetes:\n  etcd:\n    members:\n      - {name: e1, ssh_conn_id: node1}\n"
                           "      - {name: e2, ssh_conn_id: node2}\n")
    assert etcd_log.sources_from_suite(load_suite(path)) == [EtcdLogSource("e1", "node1"), EtcdLogSource("e2", "node2")]

    path.write_text(base + "metrics:\n  etcd_logs:\n    - {member: e1, ssh_conn_id: n1, log_file: /var/log/etcd.log,"
                           " sudo: true}\n")
    (source,) = etcd_log.sources_from_suite(load_suite(path))
    assert source.command(CAPTURED_AT, CAPTURED_AT) == ["sudo", "-n", "--", "tail", "-c", str(64 << 20), "--",
                                                        "/var/log/etcd.log"]
    path.write_text(base + "metrics:\n  etcd_logs:\n    - {member: e1, ssh_conn_id: n1, unit: etcd}\n")
    with pytest.raises(EtcdLogError, match=r"s.yaml: metrics.etcd_logs\[0\]: .*unknown key\(s\) unit"):
        etcd_log.sources_from_suite(load_suite(path))
