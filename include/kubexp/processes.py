"""Background processes recorded by PID file, with their output in a log file.

Every long-running process kubexp starts (local services, platform replicas, HAProxy,
etcd, JMeter servers) goes through `ManagedProcess`, so `stop` always finds and ends
exactly what was started, process group included.

A PID file holds the PID on its first line and the process's start time (psutil's create_time)
on the second, so line readers (`read pid < file`) still get the PID. A live process with that
PID counts as the recorded one only if it started at that time (within `START_TOLERANCE_S`), so
after a reboot or PID reuse nothing unrelated is signalled. A file with the PID alone (written
by older code or by a shell's `echo $! > file`) counts only when the process started before the
file was last written: a reused PID belongs to a later process.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class ProcessError(RuntimeError):
    """A managed process could not be started or did not become ready."""


# psutil derives start times from the boot time, which the kernel recomputes from the wall clock
# (whole seconds): the same process can show a start time off by up to about a second.
START_TOLERANCE_S = 1.0


def write_pidfile(path: Path, pid: int) -> None:
    """Record `pid` and its start time (see the module doc)."""
    try:
        started = f"{psutil.Process(pid).create_time():.3f}\n"
    except psutil.NoSuchProcess:  # already gone: the PID alone, which no later process can match
        started = ""
    path.write_text(f"{pid}\n{started}")


def recorded_process(path: Path) -> psutil.Process | None:
    """The live process a PID file records; None if there is no file, the process has exited
    (zombies count as exited) or the PID now belongs to a different process."""
    try:
        fields = path.read_text().split()
        written = path.stat().st_mtime
        pid = int(fields[0])
        recorded_start = float(fields[1]) if len(fields) > 1 else None
        proc = psutil.Process(pid)
        started = proc.create_time()
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
        return None  # AccessDenied: a process we may not inspect is not treated as ours
    if recorded_start is not None:
        return proc if abs(started - recorded_start) <= START_TOLERANCE_S else None
    return proc if started <= written + START_TOLERANCE_S else None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: deque[int] = deque(maxlen=4096)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody uses right now (for tests and ephemeral servers).

    Chosen below the kernel's ephemeral range, so an outgoing connection cannot take it as
    its source port before the server binds it, and never one this process handed out recently.
    """
    low, _ = _ephemeral_range()
    rng = random.SystemRandom()
    candidates = [rng.randrange(20000, low) for _ in range(200)] if low > 20000 else []
    for port in candidates:
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log written)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def tool_version(argv: Sequence[str], pattern: str) -> str:
    """The version a tool prints on stdout (group 1 of `pattern`), or "unknown" when it cannot say."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, out)
    return match.group(1) if match else "unknown"


@dataclass
class ManagedProcess:
    """One background process: `argv` started in its own session, PID in `pidfile`."""

    name: str
    argv: Sequence[str]
    state_dir: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    ports: Sequence[int] = ()
    stop_signal: int = signal.SIGTERM
    ready: Callable[[], bool] | None = None
    pid: int | None = field(default=None, init=False)

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "pids" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """PID of the recorded process if it is still alive and still the one recorded (`recorded_process`)."""
        proc = recorded_process(self.pidfile)
        return proc.pid if proc is not None else None

    def start(self, timeout: float = 60.0) -> bool:
        """Start unless already running; wait until ready. Returns False if it was running.

        Processes left in the session of an earlier start whose leader died (kill -9) are ended first."""
        if self.running_pid() is not None:
            return False
        self.stop(timeout=10)
        for port in self.ports:
            if not port_is_free(port):
                raise ProcessError(
                    f"{self.name}: port {port} on 127.0.0.1 is already in use; stop whatever "
                    f"listens there or choose another port (see README, 'Ports')"
                )
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.logfile, "ab") as log:
            try:
                proc = subprocess.Popen(
                    list(self.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, cwd=self.cwd, start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise ProcessError(f"{self.name}: program {self.argv[0]!r} not found; run `make setup`") from exc
        self.pid = proc.pid
        write_pidfile(self.pidfile, proc.pid)
        self._wait_ready(proc, timeout)
        return True

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                raise ProcessError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"log {self.logfile}:\n{tail(self.logfile)}"
                )
            if (self.ready or self._ports_accept)():
                return
            time.sleep(0.1)
        self.stop()
        raise ProcessError(f"{self.name} was not ready after {timeout:.0f} s; log {self.logfile}:\n"
                           f"{tail(self.logfile)}")

    def _ports_accept(self) -> bool:
        return all(port_accepts(port) for port in self.ports)

    def stop(self, timeout: float = 30.0) -> bool:
        """Signal the process and its session, wait, then SIGKILL what is left. False if nothing ran.

        Children left behind by a leader that died (kill -9: reparented, still in its session) are
        ended too: the kernel never gives a session's id to a new process while the session has members."""
        pid = self.running_pid()
        orphans = _session_members(_recorded_pid(self.pidfile)) if pid is None else []
        self.pidfile.unlink(missing_ok=True)
        if pid is None and not orphans:
            return False
        group = list({*_group_members(pid), *_session_members(pid, leader_alive=True)}) if pid is not None else orphans
        for proc in group:
            try:
                proc.send_signal(self.stop_signal)
            except psutil.NoSuchProcess:
                pass
        alive = _wait_gone(group, timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        _wait_gone(alive, 5)
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still running after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def _running(proc: psutil.Process) -> bool:
    """False once exited. A zombie has exited: reap it if it is ours; else its parent (or PID 1) will.

    A zombie leader whose other threads are still exiting has not: they still hold its files and ports.
    """
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
        if proc.num_threads() > 1:
            return True
        proc.wait(timeout=0)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
        pass
    return False


def _recorded_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _session_members(sid: int | None, leader_alive: bool = False) -> list[psutil.Process]:
    """Live processes of session `sid`: a live leader's whole session, or the orphans of a dead one."""
    if sid is None:
        return []
    if not leader_alive:
        try:
            if _running(psutil.Process(sid)):
                return []  # another live process has that id now: the old session had no member left
        except psutil.NoSuchProcess:
            pass
    return [proc for proc in psutil.process_iter() if _session_of(proc.pid) == sid and _running(proc)]


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _group_members(pid: int) -> list[psutil.Process]:
    """The process and every descendant still alive (they share its session)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
