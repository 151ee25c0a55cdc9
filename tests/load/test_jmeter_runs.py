"""Real JMeter 5.5, headless, against the real app: local, distributed over two servers, open loop, failures."""

from __future__ import annotations

import csv
import re
import shlex
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from jtl_reference import assert_matches_reference

from kubexp.load.jmeter import CLOSED_LOOP_PLAN, LoadError, LoadRun, run_load
from kubexp.load.jtl import aggregate
from kubexp.load.properties import PAPER_ALIASES
from kubexp.load.ramdisk import RamDiskError
from kubexp.load.rmi import ssl_properties
from kubexp.platform.base import Endpoint
from kubexp.platform.local.appserver import DEFAULT_CROP_PATH
from kubexp.processes import ManagedProcess, free_port
from kubexp.settings import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("jmeter_home_dir")]

SCENARIO = {"pods": 1, "workers": 2, "think_time_ms": 50, "duration_s": 5, "connect_timeout_ms": 2000,
            "response_timeout_ms": 10000, "arrival_rate_per_s": None}


def samples(run: LoadRun) -> list[dict[str, str]]:
    with open(run.jtl, newline="") as handle:
        return list(csv.DictReader(handle))


def check_run(run: LoadRun, endpoint: Endpoint) -> list[dict[str, str]]:
    """What holds for every successful run: t0, end, and per-second rows equal to an independent count."""
    rows = samples(run)
    assert run.jtl.parent.resolve().is_relative_to("/dev/shm")
    assert run.samples == len(rows) > 0
    assert run.t0_ms == min(int(row["timeStamp"]) for row in rows)
    assert run.t0 == datetime.fromtimestamp(run.t0_ms / 1000, tz=UTC)
    assert run.ended_at == datetime.fromtimestamp(max(int(r["timeStamp"]) + int(r["elapsed"]) for r in rows) / 1000,
                                                  tz=UTC)
    assert run.started_at < run.t0 < run.ended_at
    assert {row["URL"] for row in rows} == {f"http://{endpoint.host}:{endpoint.port}{DEFAULT_CROP_PATH}"}
    assert {row["responseCode"] for row in rows} == {"200"}
    result = aggregate(run.jtl, run.t0_ms)
    assert (result.rows, result.malformed) == (len(rows), 0)
    assert_matches_reference(result.frame, run.jtl, run.t0_ms)
    return rows


def test_local_closed_loop(cropapp: Endpoint, ram_results: Path) -> None:
    run = run_load(SCENARIO, cropapp, ram_results, request_path=DEFAULT_CROP_PATH)
    assert run.servers == () and run.plan == CLOSED_LOOP_PLAN
    assert run.properties["server_threads"] == "2" and run.properties["clients"] == "2"
    rows = check_run(run, cropapp)
    assert {row["threadName"] for row in rows} == {"workers 1-1", "workers 1-2"}
    assert max(int(row["allThreads"]) for row in rows) == 2
    assert "Starting standalone test" in run.output.read_text()
    assert run.generator["cpu_s"]["master"] > 0 and 0 < run.generator["cpu_share"]["master"] < 1
    # Think time: exponential with mean think_time_ms (a constant delay would give a spread near 0, a timer
    # that failed to evaluate a mean near 0).
    gaps = think_times_ms(rows)
    mean = statistics.mean(gaps)
    assert len(gaps) > 40 and 35 <= mean <= 100 and statistics.pstdev(gaps) / mean > 0.6, (len(gaps), mean)


def think_times_ms(rows: list[dict[str, str]]) -> list[int]:
    """Per worker, the time from the end of one sample to the start of the worker's next one."""
    gaps = []
    for thread in {row["threadName"] for row in rows}:
        mine = sorted((int(row["timeStamp"]), int(row["elapsed"])) for row in rows if row["threadName"] == thread)
        gaps += [start - (previous + elapsed) for (previous, elapsed), (start, _) in zip(mine, mine[1:], strict=False)]
    return gaps


def _paper_style_plan(folder: Path) -> Path:
    """Our plan rewritten to read only the paper's property names, as a plan of the paper's framework would."""
    text = CLOSED_LOOP_PLAN.read_text()
    for alias, ours in PAPER_ALIASES.items():
        text = text.replace(f"__P({ours},", f"__P({alias},")
    assert "__P(server_threads" not in text and "__P(clients," in text
    plan = folder / "paper-style.jmx"
    plan.write_text(text)
    return plan


def test_distributed_over_two_servers_with_a_paper_style_plan(cropapp: Endpoint, jmeter_servers: list[str],
                                                              ram_results: Path, tmp_path: Path, rmi_ssl: Path) -> None:
    plan = _paper_style_plan(tmp_path)
    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            # 30 s: the second master below (a JVM, then RMI over SSL) must reach the engine while this test
            # still runs it; at a load average of 12 on 2 cores it took 17 s from launch to configuring it.
            outcome["run"] = run_load({**SCENARIO, "workers": 4, "duration_s": 30}, cropapp, ram_results / "main",
                                      servers=jmeter_servers,
                                      plan=plan, request_path=DEFAULT_CROP_PATH, sample_sender_mode="StrippedBatch",
                                      rmi_ssl=rmi_ssl)
        except Exception as exc:  # noqa: BLE001 - re-raised below in the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=load)
    worker.start()
    # While that test runs, a second master asks one of its engines: JMeter refuses, and so must we.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            "Remote engines have been started" in out.read_text() for out in (ram_results / "main").glob("*.out")):
        time.sleep(0.2)
    with pytest.raises(LoadError, match=rf"{re.escape(jmeter_servers[1])}.*engine busy"):
        run_load({**SCENARIO, "workers": 1}, cropapp, ram_results / "busy", servers=[jmeter_servers[1]],
                 request_path=DEFAULT_CROP_PATH, rmi_ssl=rmi_ssl)
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    run = outcome["run"]
    assert isinstance(run, LoadRun)
    assert run.servers == tuple(jmeter_servers) and run.properties["clients"] == "2"
    rows = check_run(run, cropapp)
    # Each server ran its equal share (2 of 4 workers) and its samples came back through the batched sender.
    for server in jmeter_servers:
        assert {row["threadName"] for row in rows if row["threadName"].startswith(server)} == \
            {f"{server}-workers 1-1", f"{server}-workers 1-2"}
    assert aggregate(run.jtl, run.t0_ms).frame["threads"].max() == 4
    # Stopped during JMeter's 5 s sleep after the remote engines ended ("... end of run" comes after it),
    # with every sample in the JTL (check_run compared it with an independent count).
    console = run.output.read_text()
    assert "Tidying up remote" in console and "end of run" not in console
    # Both local servers' CPU was measured from /proc (each ran 2 workers).
    assert all(run.generator["cpu_s"][server] > 0 for server in jmeter_servers)
    log = run.log.read_text()
    assert "Using batching" in log and "DataStrippingSampleSender" in log
    for alias in ("clients=2", "hostname=127.0.0.1", "duration_seconds=30", "think_time_milliseconds=50"):
        assert alias in log  # ClientJMeterEngine logs the -G properties it sends


def test_open_loop_arrivals(cropapp: Endpoint, ram_results: Path) -> None:
    run = run_load({**SCENARIO, "arrival_rate_per_s": 10}, cropapp, ram_results, request_path=DEFAULT_CROP_PATH)
    assert run.plan.name == "open-loop.jmx" and run.properties["server_arrival_rate_per_s"] == "10"
    rows = check_run(run, cropapp)
    assert len(rows) <= 10 * 5  # arrivals follow the schedule, never more
    assert max(int(row["allThreads"]) for row in rows) <= int(run.properties["server_concurrency_limit"])
    assert run.generator["intended_rate_per_s"] == 10
    assert run.generator["achieved_rate_per_s"] == pytest.approx(len(rows) / 5)


class _SlowAnswer(BaseHTTPRequestHandler):
    """Answers every GET after 1.2 s."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook name
        time.sleep(1.2)
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"slow")

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out closed its socket before the answer: expected here


@pytest.fixture
def slow_endpoint() -> Iterator[Endpoint]:
    server = _QuietServer(("127.0.0.1", 0), _SlowAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Endpoint("127.0.0.1", server.server_address[1], "/slow")
    finally:
        server.shutdown()
        server.server_close()


def test_timeouts_of_zero_wait_for_slow_responses(slow_endpoint: Endpoint, ram_results: Path) -> None:
    """0 is "no timeout" (the paper's infinite timeout), not a timeout of 0 ms; 500 ms does time out."""
    slow = {**SCENARIO, "workers": 1, "think_time_ms": 0, "duration_s": 3}
    patient = run_load({**slow, "connect_timeout_ms": 0, "response_timeout_ms": 0}, slow_endpoint,
                       ram_results / "none")
    assert (patient.properties["connect_timeout_ms"], patient.properties["response_timeout_ms"]) == ("0", "0")
    rows = samples(patient)
    assert rows and {row["responseCode"] for row in rows} == {"200"}
    assert min(int(row["elapsed"]) for row in rows) >= 1200
    impatient = run_load({**slow, "response_timeout_ms": 500}, slow_endpoint, ram_results / "short")
    rows = samples(impatient)
    assert rows and all(row["success"] == "false" and "SocketTimeoutException" in row["responseCode"]
                        for row in rows)


def test_missing_server_is_named(cropapp: Endpoint, ram_results: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(LoadError, match=rf"JMeter server\(s\) {re.escape(nobody)} could not be configured"):
        run_load(SCENARIO, cropapp, ram_results, servers=[nobody], request_path=DEFAULT_CROP_PATH)


def test_jmeter_exit_code_and_reason_are_reported(cropapp: Endpoint, jmeter_servers: list[str], ram_results: Path,
                                                  tmp_path: Path, rmi_ssl: Path) -> None:
    plan = tmp_path / "broken.jmx"
    plan.write_text("<jmeterTestPlan><hashTree><NoSuchElement/></hashTree>")
    with pytest.raises(LoadError, match=r"JMeter exited with code 1: .*broken.jmx"):
        run_load(SCENARIO, cropapp, ram_results / "local", plan=plan, request_path=DEFAULT_CROP_PATH)
    servers = re.escape(",".join(jmeter_servers))
    with pytest.raises(LoadError, match=rf"JMeter exited with code 1 \(distributed mode, -R {servers}\): .*broken.jmx"):
        run_load({**SCENARIO, "workers": 4}, cropapp, ram_results / "distributed", servers=jmeter_servers, plan=plan,
                 request_path=DEFAULT_CROP_PATH, rmi_ssl=rmi_ssl)


def test_local_servers_speak_only_ssl_rmi_with_the_run_folders_keystore(
        cropapp: Endpoint, jmeter_servers: list[str], ram_results: Path, rmi_ssl: Path, tmp_path: Path) -> None:
    """Local JMeter servers used to run whatever plan any local user sent them over plain RMI."""
    import os
    import stat

    for path in (rmi_ssl, rmi_ssl.with_name("rmi_keystore.p12")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(rmi_ssl.parent.stat().st_mode) == 0o700
    password = next(line.split("=", 1)[1] for line in rmi_ssl.read_text().splitlines()
                    if line.startswith("server.rmi.ssl.keystore.password="))
    # process_iter's info is None for a process that cannot be read (a zombie of another test, another user's)
    commands = [" ".join(proc.info["cmdline"] or []) for proc in psutil.process_iter(["cmdline"])]
    jmeter = [command for command in commands if "jmeter" in command]
    assert jmeter and all(password not in command for command in jmeter)  # read from the 0600 file only
    with pytest.raises(LoadError, match=rf"{re.escape(jmeter_servers[0])} could not be configured"):
        run_load(SCENARIO, cropapp, ram_results / "plain", servers=[jmeter_servers[0]],
                 request_path=DEFAULT_CROP_PATH)  # a master without the keystore (plain RMI)
    stranger = ssl_properties(tmp_path / "another-run-folder")  # a keystore of its own: not trusted
    with pytest.raises(LoadError, match=rf"{re.escape(jmeter_servers[0])} could not be configured"):
        run_load(SCENARIO, cropapp, ram_results / "stranger", servers=[jmeter_servers[0]],
                 request_path=DEFAULT_CROP_PATH, rmi_ssl=stranger)
    run = run_load(SCENARIO, cropapp, ram_results / "ssl", servers=[jmeter_servers[0]],
                   request_path=DEFAULT_CROP_PATH, rmi_ssl=rmi_ssl)
    assert run.samples > 0
    assert ssl_properties(rmi_ssl.parent) == rmi_ssl and rmi_ssl.read_text().count(password) == 2  # made once


def test_results_must_go_to_a_ram_disk(cropapp: Endpoint, tmp_path: Path) -> None:
    with pytest.raises(RamDiskError, match="not a RAM disk"):
        run_load(SCENARIO, cropapp, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_uneven_split_is_refused_before_jmeter_starts(cropapp: Endpoint, ram_results: Path) -> None:
    with pytest.raises(ValueError, match="workers=3 cannot be divided equally among 2"):
        run_load({**SCENARIO, "workers": 3}, cropapp, ram_results, servers=["127.0.0.1:1", "127.0.0.1:2"])
    assert list(ram_results.iterdir()) == []


def _unit_section(path: Path, section: str) -> dict[str, list[str]]:
    """Keys of one section of a systemd unit; a key may repeat (Environment=)."""
    entries: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            entries.setdefault(key, []).append(value)
    return entries


def test_systemd_unit_starts_a_jmeter_server(jmeter_home_dir: Path, tmp_path: Path) -> None:
    """The unit's ExecStart, with its variables filled in as systemd would, runs a reachable server."""
    service = _unit_section(REPO_ROOT / "include" / "systemd" / "jmeter-server.service", "Service")
    port, rmi_port = free_port(), free_port()
    values = {"JMETER_HOME": str(jmeter_home_dir), "JMETER_SERVER_PORT": str(port),
              "JMETER_RMI_LOCALPORT": str(rmi_port), "JMETER_RMI_HOSTNAME": "127.0.0.1",
              "JMETER_JVM_ARGS": "-Xmx256m"}
    declared = {shlex.split(line)[0].split("=", 1)[0] for line in service["Environment"]}
    assert declared == set(values)
    (exec_start,) = service["ExecStart"]
    argv = []
    for word in shlex.split(exec_start):
        if word == "$JMETER_JVM_ARGS":
            argv += values["JMETER_JVM_ARGS"].split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], word))
    argv = [word.replace("/var/log/jmeter", str(tmp_path)) for word in argv]
    server = ManagedProcess("unit-jmeter-server", argv, tmp_path, cwd=tmp_path, ports=(port, rmi_port))
    server.ready = lambda: "Created remote object" in server.logfile.read_text(errors="replace")
    try:
        server.start(timeout=60)
        assert f"127.0.0.1:{rmi_port}" in server.logfile.read_text()
    finally:
        server.stop()
