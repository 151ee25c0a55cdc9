"""Run the load: JMeter headless, locally or distributed over JMeter servers, results on a RAM disk.

t0 (the experiment's t = 0) is the start of the earliest sample in the run's JTL, as JMeter wrote it
(`timeStamp` with `sampleresult.timestamp.start=true`, epoch milliseconds). It is taken from the
samples, not from JMeter's "Starting test" message, because engines need one to two seconds after that
message (remote configuration, script compilation) before the first request leaves; with the sample
clock, second 0 is the first second in which load was offered. Every other source (Prometheus series,
platform events) is placed on the same axis: t = floor((instant - t0) / 1 s).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubexp.load import saturation
from kubexp.load.home import jmeter_argv, jmeter_home, jvm_args
from kubexp.load.jtl import aggregate_and_keep
from kubexp.load.profiles import OPEN_LOOP_PLAN, PLANS_DIR, PROFILES
from kubexp.load.properties import load_properties, request_bound_s
from kubexp.load.ramdisk import require_ramdisk
from kubexp.load.rmi import ssl_properties
from kubexp.platform.base import Endpoint
from kubexp.processes import ManagedProcess, free_port, tail

__all__ = ["CLOSED_LOOP_PLAN", "OPEN_LOOP_PLAN", "PAPER_PLAN", "PLANS_DIR", "SAMPLE_SENDER_MODES", "LoadError",
           "LoadRun", "LocalJMeterServers", "jmeter_home", "run_load"]

CLOSED_LOOP_PLAN = PROFILES["kubexp"].plan
PAPER_PLAN = PROFILES["paper"].plan
# JMeter's sample sender modes (distributed mode). Statistical is left out: it sends aggregates, not
# samples, so the per-second ingest would count one row per aggregate. A class name is accepted too.
SAMPLE_SENDER_MODES = ("Standard", "Batch", "StrippedBatch", "Stripped", "Asynch", "StrippedAsynch",
                       "DiskStore", "StrippedDiskStore")
DEFAULT_SAMPLE_SENDER_MODE = "StrippedBatch"
# What the JTL holds: the fields kubexp.load.jtl reads plus JMeter's usual ones, CSV with a header row.
RESULT_PROPERTIES = {
    "jmeter.save.saveservice.output_format": "csv",
    "jmeter.save.saveservice.print_field_names": "true",
    "jmeter.save.saveservice.timestamp_format": "ms",
    "jmeter.save.saveservice.default_delimiter": ",",
    "sampleresult.timestamp.start": "true",
    **{f"jmeter.save.saveservice.{name}": "true" for name in (
        "time", "label", "response_code", "response_message", "thread_name", "data_type", "successful",
        "assertion_results_failure_message", "bytes", "sent_bytes", "thread_counts", "url", "latency",
        "idle_time", "connect_time")},
}
GRACE_S = 120  # beyond duration and timeouts: JVM start-up, remote configuration, the last batches of samples
# What a request without a timeout (connect or response timeout 0) may take past the load's end before
# JMeter is killed; with GRACE_S the kill comes before the DAG's load task limit (duration + 15 min).
UNBOUNDED_REQUEST_S = 300
TIDYING = "Tidying up remote"  # the master's console line once every remote engine has ended


class LoadError(RuntimeError):
    """The load run failed; the message names the JMeter server or file and what to do."""


@dataclass(frozen=True)
class LoadRun:
    jtl: Path  # the run's JMeter CSV results (on the RAM disk)
    t0: datetime  # load start, UTC: the earliest sample's start (see module docstring)
    t0_ms: int  # the same instant in epoch milliseconds, as in the JTL
    ended_at: datetime  # UTC end of the last sample (its start + elapsed)
    started_at: datetime  # UTC wall clock when the JMeter master was launched
    log: Path  # the master's jmeter.log
    output: Path  # the master's console output
    plan: Path
    servers: tuple[str, ...]  # 'host:port' of each JMeter server; empty when JMeter ran locally
    properties: dict[str, str]  # the plan properties passed (-G or -J)
    samples: int  # well-formed samples in the JTL
    generator: dict[str, Any]  # JMeter engines' CPU use, achieved arrivals, saturated (kubexp.load.saturation)


@dataclass
class LocalJMeterServers:
    """`count` JMeter servers on free loopback ports, as local stand-ins for the paper's load hosts."""

    count: int
    state_dir: Path
    host: str = "127.0.0.1"
    rmi_ssl: Path | None = None  # kubexp.load.rmi's properties file; the run folder's when None
    addresses: list[str] = field(default_factory=list, init=False)

    def _process(self, index: int, port: int = 0, rmi_port: int = 0) -> ManagedProcess:
        name = f"jmeter-server-{index}"
        log = self.state_dir / "logs" / f"{name}.jmeter.log"
        argv = jmeter_argv(
            "-s", f"-Jserver_port={port}", f"-Jserver.rmi.localport={rmi_port}", "-q", str(self.rmi_ssl),
            "-j", str(log), jvm=[*jvm_args(), f"-Djava.rmi.server.hostname={self.host}"],
        )
        process = ManagedProcess(name=name, argv=argv, state_dir=self.state_dir, cwd=self.state_dir,
                                 ports=(port, rmi_port))
        # Ready once the registry is bound: "Created remote object" comes earlier (2 s earlier with SSL here).
        process.ready = lambda: f"Bound to RMI registry on port {port}" in log.read_text(errors="replace")
        return process

    def start(self, timeout: float = 90.0) -> list[str]:
        """Stop whatever servers this folder recorded, then start `count` fresh ones; their 'host:port'."""
        if self.count < 1:
            raise LoadError(f"load.servers={self.count}: need at least one local JMeter server")
        self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        jmeter_home()
        self.rmi_ssl = self.rmi_ssl or ssl_properties()
        started: list[ManagedProcess] = []
        try:
            for index in range(self.count):
                port, rmi_port = free_port(), free_port()
                process = self._process(index, port, rmi_port)
                process.logfile.parent.mkdir(parents=True, exist_ok=True)
                for old in (process.logfile, self.state_dir / "logs" / f"jmeter-server-{index}.jmeter.log"):
                    old.write_text("")  # readiness reads the JMeter log: start both logs empty
                process.start(timeout)
                started.append(process)
                self.addresses.append(f"{self.host}:{port}")
        except Exception:
            for process in started:
                process.stop()
            self.addresses.clear()
            raise
        return list(self.addresses)

    def stop(self) -> None:
        """Stop every server recorded in state_dir (also those of an earlier, crashed run)."""
        # SIGKILL: a server has nothing to flush (its log is written as it goes, samples went to the master),
        # and the JVM's orderly shutdown takes 0.5 s on a quiet machine (2.7 s seen in a busy cleanup).
        for pidfile in sorted((self.state_dir / "pids").glob("jmeter-server-*.pid")):
            ManagedProcess(name=pidfile.stem, argv=(), state_dir=self.state_dir, stop_signal=signal.SIGKILL).stop()
        self.addresses.clear()


def _server_list(servers: Sequence[str]) -> list[str]:
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LoadError(f"JMeter server {server!r} is not 'host:port'; fix load.servers in the suite")
    return list(servers)


def _check_mode(mode: str) -> str:
    if mode in SAMPLE_SENDER_MODES or "." in mode:
        return mode
    raise LoadError(f"sample sender mode {mode!r} is not one of {', '.join(SAMPLE_SENDER_MODES)} "
                    f"(or a SampleSender class name); fix load.sample_sender_mode")


def jmeter_command(plan: Path, jtl: Path, log: Path, properties: Mapping[str, str], *, servers: Sequence[str],
                   sample_sender_mode: str, rmi_hostname: str | None = None, rmi_ssl: Path | None = None) -> list[str]:
    """The master's argv: plan properties as -G (to every server) or -J (local run); RMI over SSL with the
    keystore `rmi_ssl` names (kubexp.load.rmi), else without SSL (remote servers set up without it)."""
    flag = "-G" if servers else "-J"
    # The JVM exits as soon as the test has ended and the results are written, instead of waiting for
    # lingering RMI threads (seconds of orchestration overhead per experiment).
    args = ["-n", "-t", str(plan), "-l", str(jtl), "-j", str(log), "-Jjmeterengine.nongui.port=0",
            "-Jjmeterengine.force.system.exit=true"]
    args += [f"-J{name}={value}" for name, value in RESULT_PROPERTIES.items()]
    args += [f"{flag}{name}={value}" for name, value in properties.items()]
    jvm = jvm_args()
    if servers:
        ssl = ["-q", str(rmi_ssl)] if rmi_ssl else ["-Jserver.rmi.ssl.disable=true"]
        args += ["-R", ",".join(servers), *ssl, f"-Jmode={sample_sender_mode}",
                 "-Gsampleresult.timestamp.start=true"]
        if rmi_hostname:
            jvm.append(f"-Djava.rmi.server.hostname={rmi_hostname}")
    return jmeter_argv(*args, jvm=jvm)


def _failure(output: str, log_text: str, servers: Sequence[str], returncode: int | None) -> str | None:
    """What went wrong, naming the server, from JMeter's console output and log; None when all is well."""
    not_configured = re.search(r"could not be configured:\s*\[([^\]]*)\]", output)
    if not_configured:
        return (f"JMeter server(s) {not_configured.group(1)} could not be configured (not running, wrong port, or "
                f"firewall); restart jmeter-server there")
    not_started = re.search(r"remote engines have not started:\s*\[([^\]]*)\]", output)
    if not_started:
        busy = " (engine busy: another test still runs there)" if "Engine is busy" in output + log_text else ""
        return f"JMeter server(s) {not_started.group(1)} did not start the test{busy}; restart jmeter-server there"
    if returncode != 0:
        reason = re.findall(r"(?:An error occurred|Error in NonGUIDriver)[^\n]*", output)
        where = f" (distributed mode, -R {','.join(servers)})" if servers else ""
        return f"JMeter exited with code {returncode}{where}: {reason[-1] if reason else 'see its output'}"
    unfinished = [server for server in servers if f"Finished remote host: {server}" not in log_text]
    if unfinished:
        return f"JMeter server(s) {', '.join(unfinished)} never reported the end of the test"
    return None


def kill_after_s(properties: Mapping[str, str]) -> float:
    """How long the master may run before it is killed: duration, GRACE_S and twice the longest request
    (UNBOUNDED_REQUEST_S for a request without a timeout)."""
    request_s = request_bound_s(float(properties["connect_timeout_ms"]), float(properties["response_timeout_ms"]))
    return float(properties["duration_s"]) + GRACE_S + 2 * (UNBOUNDED_REQUEST_S if math.isinf(request_s) else request_s)


def _utc(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def run_load(params: Mapping[str, Any], endpoint: Endpoint, results_dir: Path, *, servers: Sequence[str] | None = None,
             plan: Path | None = None, request_path: str | None = None,
             sample_sender_mode: str = DEFAULT_SAMPLE_SENDER_MODE, rmi_hostname: str | None = None,
             extra_properties: Mapping[str, str] | None = None, require_ram_disk: bool = True,
             rmi_ssl: Path | None = None) -> LoadRun:
    """Run one experiment's load to completion and return where its samples are and when it started.

    servers: 'host:port' of running JMeter servers (distributed mode, `workers` split equally among them);
    None or empty runs JMeter locally in this process's host. plan: a .jmx reading the properties of
    kubexp.load.properties (default: our closed-loop plan, or the open-loop one when
    params['arrival_rate_per_s'] is set). request_path: path and query of the request (default endpoint.path).
    rmi_ssl: the servers' RMI SSL properties (LocalJMeterServers.rmi_ssl); None for servers without SSL.
    """
    servers = _server_list(servers or [])
    mode = _check_mode(sample_sender_mode)
    if require_ram_disk:
        require_ramdisk(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    open_loop = params.get("arrival_rate_per_s") is not None
    plan = Path(plan) if plan else (OPEN_LOOP_PLAN if open_loop else CLOSED_LOOP_PLAN)
    if not plan.is_file():
        raise LoadError(f"JMeter plan {plan} does not exist; fix load.plan in the suite")
    properties = load_properties(params, endpoint, servers=max(1, len(servers)),
                                 request_path=request_path or endpoint.path)
    properties.update(extra_properties or {})
    started_at = datetime.now(UTC)
    stem = f"jmeter-{started_at:%Y%m%dT%H%M%S%fZ}"  # a new name per run: JMeter appends to an existing JTL
    jtl, log, output = (results_dir / f"{stem}{suffix}" for suffix in (".jtl", ".log", ".out"))
    if rmi_hostname is None and servers and all(s.startswith(("127.", "localhost:")) for s in servers):
        rmi_hostname = "127.0.0.1"
    argv = jmeter_command(plan, jtl, log, properties, servers=servers, sample_sender_mode=mode,
                          rmi_hostname=rmi_hostname, rmi_ssl=rmi_ssl)
    timeout = kill_after_s(properties)
    server_pids = saturation.local_server_pids(servers)
    servers_before = saturation.cpu_seconds(server_pids)
    launched = time.monotonic()
    returncode, master_cpu_s = _run_master(argv, output, timeout, results_dir, jtl if servers else None)
    wall_s = time.monotonic() - launched
    servers_after = saturation.cpu_seconds(server_pids)
    console = output.read_text(errors="replace")
    log_text = log.read_text(errors="replace") if log.exists() else ""
    if returncode is None:
        raise LoadError(f"JMeter did not finish within {timeout:.0f} s (duration {properties['duration_s']} s); "
                        f"killed. {_failure(console, log_text, servers, 0) or ''} Output {output}:\n{tail(output)}")
    problem = _failure(console, log_text, servers, returncode)
    if problem:
        raise LoadError(f"{problem}. Plan {plan}; output {output}; log {log}:\n{tail(output)}")
    if not jtl.exists():
        raise LoadError(f"JMeter wrote no results file {jtl}; see {output} and {log}")
    span = aggregate_and_keep(jtl)  # t0, the end and the per-second rows (collect reads them back), in one pass
    if span.rows == 0 or span.t0_ms is None or span.last_end_ms is None:
        raise LoadError(f"JMeter wrote no sample to {jtl} (is {endpoint.url} reachable from the JMeter "
                        f"{'servers ' + ', '.join(servers) if servers else 'host'}?); see {log}")
    generator = saturation.assess(
        master_cpu_s=master_cpu_s, wall_s=wall_s, servers=servers, samples=span.rows,
        server_cpu_s={name: servers_after[name] - servers_before[name] for name in servers_after
                      if name in servers_before},
        duration_s=float(params["duration_s"]), intended_rate_per_s=params.get("arrival_rate_per_s"))
    return LoadRun(jtl=jtl, t0=_utc(span.t0_ms), t0_ms=span.t0_ms, ended_at=_utc(span.last_end_ms),
                   started_at=started_at, log=log, output=output, plan=plan, servers=tuple(servers),
                   properties=properties, samples=span.rows, generator=generator)


def _results_closed(pid: int, output: Path, jtl: Path) -> bool:
    """A distributed master has received every sample: it is tidying up and no longer holds the JTL open."""
    if TIDYING not in output.read_text(errors="replace"):
        return False
    try:
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:  # the master exited meanwhile
        return False
    return str(jtl.resolve()) not in held


def _run_master(argv: list[str], output: Path, timeout: float, cwd: Path,
                jtl: Path | None = None) -> tuple[int | None, float]:
    """Run the master in its own process group: its exit code (None if it was killed after `timeout`) and
    the CPU seconds it used.

    With `jtl` (distributed mode): once the remote engines have ended, JMeter's master sleeps 5 s "to allow
    listeners to close files" before it exits. As soon as it has said it is tidying up and has closed the
    JTL (closing flushes the last samples), its work is done: it is stopped then, and that counts as exit 0.
    """
    with open(output, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, start_new_session=True)
        deadline = time.monotonic() + timeout
        code: int | None = None
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    process.returncode = code = os.waitstatus_to_exitcode(status)
                    return code, usage.ru_utime + usage.ru_stime
                if time.monotonic() > deadline:
                    break
                if jtl is not None and _results_closed(process.pid, output, jtl):
                    code = 0
                    break
                time.sleep(0.1)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)  # this task is being killed: leave no JMeter behind
            process.wait()
            raise
        cpu_s = process_cpu_s(process.pid)
        os.killpg(process.pid, signal.SIGKILL)  # timed out, or done (see above)
        process.wait()
        return code, cpu_s


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far, from /proc; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
