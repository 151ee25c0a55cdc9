"""App replicas: one gunicorn process tree per replica, each in its own memory cgroup.

A replica is what a pod with one container is on Kubernetes. Its PID file and log follow
`kubexp.processes.ManagedProcess`'s layout (pids/<name>.pid, logs/<name>.log) so teardown
stops it the same way; it is started here rather than through ManagedProcess because the
supervisor must join it to its cgroup before exec and needs its exit status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from kubexp.platform.local.cgroups import ReplicaCgroup
from kubexp.processes import ManagedProcess, write_pidfile


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to (re)start one replica; stored as JSON in the deployment file."""

    name: str
    port: int
    argv: list[str]
    env: dict[str, str]
    cwd: str
    metrics_dir: str  # PROMETHEUS_MULTIPROC_DIR, wiped before every start as a fresh container would be
    cgroup_version: str
    memory_dir: str | None
    cpu_dir: str | None

    @property
    def cgroup(self) -> ReplicaCgroup:
        return ReplicaCgroup(self.cgroup_version, _path(self.memory_dir), _path(self.cpu_dir))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ReplicaSpec:
        return cls(**raw)

    def managed(self, state_dir: Path) -> ManagedProcess:
        """The PID-file view of this replica (for teardown and status)."""
        return ManagedProcess(name=self.name, argv=self.argv, state_dir=state_dir, ports=[self.port])


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def start_replica(spec: ReplicaSpec, state_dir: Path) -> subprocess.Popen[bytes]:
    """Start the replica in its own session and cgroup; does not wait for it to serve."""
    metrics = Path(spec.metrics_dir)
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    managed = spec.managed(state_dir)
    managed.logfile.parent.mkdir(parents=True, exist_ok=True)
    managed.pidfile.parent.mkdir(parents=True, exist_ok=True)
    cgroup = spec.cgroup

    def join_cgroup() -> None:  # runs in the child before exec: every process of the replica is limited
        cgroup.join(os.getpid())

    env = {**os.environ, **spec.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    with open(managed.logfile, "ab") as log:
        proc = subprocess.Popen(
            spec.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=spec.cwd,
            start_new_session=True, preexec_fn=join_cgroup if cgroup.dirs() else None,
        )
    write_pidfile(managed.pidfile, proc.pid)
    return proc


def kill_replica(spec: ReplicaSpec, pid: int | None, sig: int = signal.SIGKILL) -> None:
    """Signal the replica's whole process tree (session and cgroup), as a container is killed."""
    targets: set[int] = set(spec.cgroup.pids())
    if pid is not None:
        try:
            root = psutil.Process(pid)
            targets.update(p.pid for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            pass
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for target in targets:
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass


def stop_replicas(running: list[tuple[ReplicaSpec, subprocess.Popen[bytes] | None]], state_dir: Path,
                  grace_s: float = 5.0) -> None:
    """SIGINT (gunicorn: quick shutdown) all at once, wait up to `grace_s`, then SIGKILL the rest; drop PID files."""
    pids = [proc.pid if proc is not None else spec.managed(state_dir).running_pid() for spec, proc in running]
    for (spec, _), pid in zip(running, pids, strict=True):
        kill_replica(spec, pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(
            _alive(spec, proc, pid) for (spec, proc), pid in zip(running, pids, strict=True)):
        time.sleep(0.05)
    for (spec, proc), pid in zip(running, pids, strict=True):
        kill_replica(spec, pid, signal.SIGKILL)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        spec.cgroup.kill_all()
        spec.managed(state_dir).pidfile.unlink(missing_ok=True)


def _alive(spec: ReplicaSpec, proc: subprocess.Popen[bytes] | None, pid: int | None) -> bool:
    if proc is not None and proc.poll() is None:
        return True
    if spec.cgroup.pids():
        return True
    if proc is None and pid is not None:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    return False
