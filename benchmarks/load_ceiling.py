"""The load generator's ceiling on this machine: JMeter (as kubexp runs it) beside wrk, in the same run.

Both send requests with no think time to a trivial endpoint: HAProxy answering every request itself
(`http-request return`, 2 bytes), so the endpoint costs little. JMeter runs kubexp's closed-loop plan
locally through kubexp.load.jmeter.run_load (results on /dev/shm); its rate is samples per second of
load, its CPU share comes from the run's generator record. wrk (Debian package) runs with as many
threads as cores and the same number of connections. Prints requests/s of each.

    .venv/bin/python benchmarks/load_ceiling.py [--duration 10] [--workers 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import figures

from kubexp.load.jmeter import run_load
from kubexp.load.jtl import aggregate
from kubexp.platform.base import Endpoint
from kubexp.processes import free_port

HAPROXY_CONFIG = """global
    maxconn 2000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend trivial
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string ok
"""


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"HAProxy did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s") from None
            time.sleep(0.1)


def wrk_rate(url: str, duration_s: int, connections: int) -> float:
    threads = max(1, min(connections, len(os.sched_getaffinity(0))))
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", url],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load for each generator")
    parser.add_argument("--workers", type=int, default=8, help="JMeter threads = wrk connections")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list (make bench)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; `make bench` installs it as root)")
    folder = Path(tempfile.mkdtemp(prefix="kubexp-ceiling-"))
    results = Path(tempfile.mkdtemp(prefix="kubexp-ceiling-", dir="/dev/shm"))
    port = free_port()
    (folder / "haproxy.cfg").write_text(HAPROXY_CONFIG.format(port=port))
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(folder / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        scenario = {"pods": 1, "workers": args.workers, "think_time_ms": 0, "duration_s": args.duration,
                    "connect_timeout_ms": 2000, "response_timeout_ms": 10000, "arrival_rate_per_s": None}
        run = run_load(scenario, Endpoint("127.0.0.1", port, "/"), results)
        successes = int(aggregate(run.jtl, run.t0_ms).frame["successes"].sum())
        if successes != run.samples:
            raise SystemExit(f"JMeter: {run.samples - successes} of {run.samples} requests failed; no ceiling measured")
        jmeter_rate = run.samples / args.duration
        cpu = run.generator["cpu_share"]["master"]
        wrk = wrk_rate(f"http://127.0.0.1:{port}/", args.duration, args.workers)
    finally:
        haproxy.terminate()
        haproxy.wait()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(results, ignore_errors=True)
    print(f"load average: {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores")
    print(f"JMeter (kubexp's plan, {args.workers} threads, 0 think time): {jmeter_rate:,.0f} requests/s, "
          f"CPU share of the host {cpu:.0%}")
    print(f"wrk ({args.workers} connections):                          {wrk:,.0f} requests/s")
    figures.write(args.json, [figures.figure(
        "load generator ceiling (requests/s, 0 think time, trivial endpoint)", round(jmeter_rate), "requests/s",
        peer="wrk", peer_value=round(wrk), better="higher",
        settings=f"{args.workers} JMeter threads / wrk connections, {args.duration} s each, HAProxy "
                 f"`http-request return` on loopback; JMeter used {cpu:.0%} of the host's cores")])


if __name__ == "__main__":
    main()
