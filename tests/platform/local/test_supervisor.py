"""The supervisor process on its own: crash loops with doubling back-off, and programs that cannot start."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kubexp.platform.local import journal
from kubexp.platform.local.replicas import ReplicaSpec
from kubexp.platform.local.supervisor import Deployment
from kubexp.processes import ManagedProcess, free_port


def run_supervisor(state_dir: Path, argv: list[str], until_events: int,
                   timeout: float = 20) -> list[journal.JournalEntry]:
    spec = ReplicaSpec(name="replica-0", port=free_port(), argv=argv, env={}, cwd=str(state_dir),
                       metrics_dir=str(state_dir / "metrics"), cgroup_version="none", memory_dir=None, cpu_dir=None)
    Deployment("s1", [spec], 64, free_port(), restart_backoff_s=0.3, restart_backoff_cap_s=1.2,
               restart_backoff_reset_s=600).save(state_dir / "deployment.json")
    supervisor = ManagedProcess("supervisor", [sys.executable, "-m", "kubexp.platform.local.supervisor",
                                               str(state_dir)], state_dir,
                                ready=(state_dir / "supervisor.started").exists)
    supervisor.start(timeout=20)
    try:
        deadline = time.monotonic() + timeout
        while len(journal.read(state_dir / "events.jsonl")) < until_events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        supervisor.stop(timeout=10)
    return journal.read(state_dir / "events.jsonl")


@pytest.mark.slow
def test_crash_loop_backs_off_doubling_up_to_the_cap(tmp_path: Path) -> None:
    entries = run_supervisor(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"], until_events=10)
    kinds = [e.kind for e in entries]
    assert kinds[:5] == ["Started", "Exited", "Restarted", "Exited", "Restarted"]
    exits = [e.message for e in entries if e.kind == "Exited"]
    assert all("exit code 3" in m for m in exits)
    delays = [float(m.rsplit("restart in ", 1)[1].split()[0]) for m in exits]
    assert delays[:4] == [0.3, 0.6, 1.2, 1.2]
    assert not (tmp_path / "pids" / "replica-0.pid").exists()


def test_program_that_cannot_start_is_journalled_and_retried(tmp_path: Path) -> None:
    entries = run_supervisor(tmp_path, [str(tmp_path / "no-such-program")], until_events=2)
    assert [e.kind for e in entries[:2]] == ["FailedStart", "FailedStart"]
    assert "no-such-program" in entries[0].message and "retry in 0.3 s" in entries[0].message
