"""Load hosts restarted over real SSH (loopback sshd); a small HTTP server stands in for jmeter-server."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubexp.platform import create
from kubexp.platform.base import PlatformError
from kubexp.platform.kubernetes.loadhosts import LoadHost, LoadHostSettings, load_hosts, restart_load_servers
from kubexp.processes import ManagedProcess, free_port, port_accepts
from kubexp.suite import LoadSection, parse_suite, typed_section

# What `systemctl restart jmeter-server` does, without systemd: end the old server, start a new one.
# The host value is written to a file beside the PID file, so the test can see what arrived.
RESTART = (
    'printf "%s" "$3" > "$1.host"; p=$(cat "$1" 2>/dev/null) && kill "$p" 2>/dev/null; '
    'while [ -n "$p" ] && kill -0 "$p" 2>/dev/null && ! grep -q "^State:[[:space:]]*Z" "/proc/$p/status"; do '
    'sleep 0.05; done; setsid "$2" -m http.server --bind 127.0.0.1 "$4" >/dev/null 2>&1 </dev/null & echo $! > "$1"'
)


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[ManagedProcess]:
    """The PID file the restart command uses; whatever it names is stopped at the end."""
    process = ManagedProcess(name="jmeter-standin", argv=[sys.executable], state_dir=tmp_path)
    process.pidfile.parent.mkdir(parents=True)
    yield process
    process.stop(timeout=10)


def settings_for(standin: ManagedProcess) -> LoadHostSettings:
    return LoadHostSettings.from_mapping({"restart_command": [
        "sh", "-c", RESTART, "test-restart", str(standin.pidfile), sys.executable, "{host}", "{port}"]})


@pytest.mark.slow
def test_servers_are_restarted_and_reachable(ssh_conn: str, standin: ManagedProcess, tmp_path: Path) -> None:
    port = free_port()
    load = {"servers": [f"127.0.0.1:{port}"], "ssh_conn_ids": [ssh_conn]}

    assert restart_load_servers(load_hosts(typed_section("load", load, "test")), settings_for(standin), timeout_s=20,
                                interval_s=0.1) == [f"127.0.0.1:{port}"]
    first = standin.running_pid()
    assert first is not None and port_accepts(port)

    suite = parse_suite({"suite": "kx-load", "platform": "kubernetes", "repetitions": 1, "matrix": {"workers": [6]},
                         "load": load, "kubernetes": {"load_hosts": {
                             "restart_command": list(settings_for(standin).restart_command)}}},
                        tmp_path / "kx-load.yaml")
    assert create(suite).restart_load_servers() == [f"127.0.0.1:{port}"]  # the platform's own path, from the suite
    second = standin.running_pid()
    assert second not in (None, first) and port_accepts(port)  # a fresh process, listening again


@pytest.mark.slow
def test_host_value_reaches_the_command_as_one_inert_argument(ssh_conn: str, standin: ManagedProcess,
                                                              trap: Path) -> None:
    host = f"$(touch${{IFS}}{trap}/a);touch${{IFS}}{trap}/b`touch${{IFS}}{trap}/c`|tee${{IFS}}{trap}/d"
    hosts = [LoadHost(address=f"{host}:{free_port()}", ssh_conn_id=ssh_conn)]

    with pytest.raises(PlatformError, match=r"load host \$\(touch.*JMeter server accepting connections"):
        restart_load_servers(hosts, settings_for(standin), timeout_s=0.5, interval_s=0.1)

    assert Path(f"{standin.pidfile}.host").read_text() == host
    assert list(trap.iterdir()) == []


def test_default_restart_is_systemctl_and_dry_run_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    hosts = load_hosts(LoadSection(servers=("10.0.0.7:1099", "10.0.0.8:1099"), ssh_conn_ids=("load1", "load2")))
    settings = LoadHostSettings.from_mapping({"sudo": True})

    assert restart_load_servers(hosts, settings, dry_run=True) == ["10.0.0.7:1099", "10.0.0.8:1099"]

    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[dry-run] load host 10.0.0.7:1099: sudo -n -- systemctl restart jmeter-server",
                     "[dry-run] load host 10.0.0.8:1099: sudo -n -- systemctl restart jmeter-server"]
    assert shlex.split(lines[0].split(": ", 1)[1])[-1] == "jmeter-server"


def test_local_servers_need_no_hosts_and_mismatches_are_named() -> None:
    assert load_hosts(LoadSection(servers=2)) == []
    with pytest.raises(ValueError, match=r"load.ssh_conn_ids: 0 connection ids for 1 servers"):
        load_hosts(LoadSection(servers=("10.0.0.7:1099",)))
    with pytest.raises(ValueError, match=r"restart_command: placeholder \{unit\} is unknown"):
        LoadHostSettings.from_mapping({"restart_command": ["systemctl", "restart", "{unit}"]})
