"""The supervisor that keeps the local cluster's components running (what systemd does on a real node)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from kubexp.platform.kubernetes.localcluster.supervise import read_restarts
from kubexp.processes import ManagedProcess

# Exits with code 3 on its first run (no marker file yet), then stays up.
PROGRAM = ("import pathlib, sys, time\n"
           "marker = pathlib.Path(sys.argv[1])\n"
           "if not marker.exists():\n"
           "    marker.write_text('ran')\n"
           "    sys.exit(3)\n"
           "time.sleep(600)\n")


def supervised(tmp_path: Path) -> ManagedProcess:
    argv = [sys.executable, "-m", "kubexp.platform.kubernetes.localcluster.supervise",
            str(tmp_path / "pids" / "component.restarts"), "--",
            sys.executable, "-c", PROGRAM, str(tmp_path / "marker")]
    return ManagedProcess(name="component", argv=argv, state_dir=tmp_path, ready=lambda: True)


def children(proc: ManagedProcess) -> list[psutil.Process]:
    pid = proc.running_pid()
    assert pid is not None
    return psutil.Process(pid).children()


def wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_component_that_exits_is_restarted_counted_and_logged(tmp_path: Path) -> None:
    proc = supervised(tmp_path)
    proc.start(timeout=10)
    try:
        wait_for(lambda: read_restarts(tmp_path / "pids" / "component.restarts") == 1 and len(children(proc)) == 1)
        assert "exited with code 3" in proc.logfile.read_text()
        # a kill -9 of the component itself (not the supervisor) is a second restart
        first = children(proc)[0]
        first.kill()
        wait_for(lambda: read_restarts(tmp_path / "pids" / "component.restarts") == 2
                 and [c.pid for c in children(proc)] not in ([], [first.pid]))
    finally:
        proc.stop(timeout=10)


def test_stop_ends_supervisor_and_component_without_a_restart(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("ran")  # the component stays up from its first start
    proc = supervised(tmp_path)
    proc.start(timeout=10)
    wait_for(lambda: len(children(proc)) == 1)
    component = children(proc)[0]
    assert proc.stop(timeout=10)
    assert not component.is_running() or component.status() == psutil.STATUS_ZOMBIE
    time.sleep(1.5)  # longer than the first restart delay
    assert read_restarts(tmp_path / "pids" / "component.restarts") == 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path / "marker") in (p.info["cmdline"] or [])]
