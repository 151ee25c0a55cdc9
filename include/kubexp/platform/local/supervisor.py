"""The local kubelet: keeps replicas running, restarts them with back-off, journals what happened.

Runs as its own background process (`python -m kubexp.platform.local.supervisor STATE_DIR`)
so replicas outlive the Airflow task that deployed them. It reads the deployment file,
starts every replica, then every 0.2 s:
- an OOM kill in a replica's cgroup (the kernel's oom_kill counter rose) ends the whole
  replica, as a container's OOM kill does (memory.oom.group), and is journalled OOMKilled
  when the replica is gone;
- any other end of a replica is journalled Exited with its code or signal;
- a dead replica is restarted after kubelet's back-off (10 s, doubled per restart, capped,
  reset after a long healthy run) and journalled Restarted (FailedStart if it cannot be started);
- HAProxy's view of each replica is polled each second; DOWN/UP changes are journalled
  Unhealthy/Ready (a failed or passed readiness check).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from kubexp.platform.local import haproxy, journal
from kubexp.platform.local.replicas import ReplicaSpec, kill_replica, start_replica, stop_replicas

SOURCE = "local-supervisor"
HEALTH_SOURCE = "local-haproxy"
TICK_S = 0.2
HEALTH_POLL_S = 1.0


@dataclass(frozen=True)
class Deployment:
    """The deployment file the platform writes and the supervisor reads."""

    scenario_id: str
    replicas: list[ReplicaSpec]
    memory_limit_mib: int
    stats_port: int
    restart_backoff_s: float
    restart_backoff_cap_s: float
    restart_backoff_reset_s: float

    def save(self, path: Path) -> None:
        raw = {**self.__dict__, "replicas": [r.to_json() for r in self.replicas]}
        path.write_text(json.dumps(raw, indent=1))

    @classmethod
    def load(cls, path: Path) -> Deployment:
        raw = json.loads(path.read_text())
        raw["replicas"] = [ReplicaSpec.from_json(r) for r in raw["replicas"]]
        return cls(**raw)


def backoff_delay(restarts: int, initial_s: float, cap_s: float) -> float:
    """kubelet's crash back-off before restart number `restarts + 1`: initial * 2^restarts, capped."""
    return min(cap_s, initial_s * 2 ** min(restarts, 30))


@dataclass
class ReplicaState:
    spec: ReplicaSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    oom_seen: int = 0  # the cgroup's oom_kill counter when last read
    oom_kills: int = 0  # OOM kills during the current run
    restarts: int = 0  # in the current back-off sequence
    restart_total: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.deployment = Deployment.load(state_dir / "deployment.json")
        self.journal = state_dir / "events.jsonl"
        self.replicas = [ReplicaState(spec) for spec in self.deployment.replicas]
        self.health: dict[str, str] = {}
        self.stopping = False

    def record(self, kind: str, obj: str, message: str, source: str = SOURCE) -> None:
        journal.append(self.journal, source, kind, obj, message)

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_requested)
        for replica in self.replicas:
            if self._start(replica, time.monotonic()):
                self.record("Started", replica.spec.name, f"replica on 127.0.0.1:{replica.spec.port}, memory "
                            f"limit {self.deployment.memory_limit_mib} MiB, scenario {self.deployment.scenario_id}")
        (self.state_dir / "supervisor.started").touch()
        next_health = 0.0
        while not self.stopping:
            now = time.monotonic()
            for replica in self.replicas:
                self._check(replica, now)
            if now >= next_health:
                self._poll_health()
                next_health = now + HEALTH_POLL_S
            time.sleep(TICK_S)
        stop_replicas([(r.spec, r.proc) for r in self.replicas], self.state_dir)

    def _stop_requested(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _start(self, replica: ReplicaState, now: float) -> bool:
        """Start the replica; if that fails, journal why and retry after the back-off."""
        replica.oom_seen = replica.spec.cgroup.oom_kills()
        replica.oom_kills = 0
        replica.restart_at = None
        try:
            replica.proc = start_replica(replica.spec, self.state_dir)
        except (OSError, subprocess.SubprocessError) as exc:
            delay = self._next_delay(replica, ran=0.0)
            replica.restart_at = now + delay
            self.record("FailedStart", replica.spec.name, f"cannot start: {exc}; retry in {delay:g} s")
            return False
        replica.started_at = now
        return True

    def _next_delay(self, replica: ReplicaState, ran: float) -> float:
        if ran >= self.deployment.restart_backoff_reset_s:
            replica.restarts = 0
        delay = backoff_delay(replica.restarts, self.deployment.restart_backoff_s,
                              self.deployment.restart_backoff_cap_s)
        replica.restarts += 1
        return delay

    def _check(self, replica: ReplicaState, now: float) -> None:
        if replica.proc is None:
            if replica.restart_at is not None and now >= replica.restart_at and self._start(replica, now):
                replica.restart_total += 1
                self.record("Restarted", replica.spec.name, f"restart {replica.restart_total} after back-off")
            return
        self._check_oom(replica)
        code = replica.proc.poll()
        if code is not None:
            self._ended(replica, code, now)

    def _check_oom(self, replica: ReplicaState) -> None:
        count = replica.spec.cgroup.oom_kills()
        if count > replica.oom_seen:
            replica.oom_kills += count - replica.oom_seen
            replica.oom_seen = count
            kill_replica(replica.spec, replica.proc.pid if replica.proc else None)

    def _ended(self, replica: ReplicaState, code: int, now: float) -> None:
        kill_replica(replica.spec, replica.proc.pid if replica.proc else None)  # orphaned workers go too
        replica.spec.cgroup.kill_all()
        self._check_oom(replica)
        ran = now - replica.started_at
        delay = self._next_delay(replica, ran)
        replica.proc = None
        replica.restart_at = now + delay
        replica.spec.managed(self.state_dir).pidfile.unlink(missing_ok=True)
        how = f"killed by signal {-code} ({_signal_name(-code)})" if code < 0 else f"exit code {code}"
        if replica.oom_kills:
            self.record("OOMKilled", replica.spec.name,
                        f"memory limit {self.deployment.memory_limit_mib} MiB exceeded: the kernel OOM-killed "
                        f"{replica.oom_kills} process(es) of the replica, so the whole replica was stopped as a "
                        f"container is ({how}) after {ran:.1f} s; restart in {delay:g} s")
        else:
            self.record("Exited", replica.spec.name, f"{how} after {ran:.1f} s; restart in {delay:g} s")

    def _poll_health(self) -> None:
        states = haproxy.server_states(self.deployment.stats_port, timeout=0.5)
        for server in states or []:
            if server.status.startswith("DOWN"):
                state = "DOWN"
            elif server.checked_up:
                state = "UP"
            else:
                continue  # not checked yet
            if self.health.get(server.name) == state:
                continue
            self.health[server.name] = state
            detail = f"check {server.check_status} {server.check_code}".strip()
            if state == "DOWN":
                self.record("Unhealthy", server.name, f"readiness check failed ({detail}); "
                            f"HAProxy stops routing to it", HEALTH_SOURCE)
            else:
                self.record("Ready", server.name, f"readiness check passed ({detail}); HAProxy routes to it",
                            HEALTH_SOURCE)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m kubexp.platform.local.supervisor STATE_DIR", file=sys.stderr)
        return 2
    Supervisor(Path(argv[0])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
