"""Crop throughput of the application under test on this machine, by gunicorn worker count.

Starts cropapp under gunicorn (as the local platform does, without a memory limit) with
1, 2 and 4 workers, drives it with a closed loop of client threads (keep-alive, no think
time) sending the load's default request, and prints requests/s, median and p99 latency,
and memory per worker (resident now and peak, from /proc and the app's own gauge).

    .venv/bin/python benchmarks/app_throughput.py [--duration 15] [--concurrency 8] [--workers 1,2,4]

The client runs on the same cores as the server, so figures are a lower bound of what
the app could do alone. Single-threaded clients would under-drive it: keep concurrency
at least 2x the workers.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from kubexp.platform.local import appserver
from kubexp.processes import free_port


@dataclass
class Result:
    workers: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    worker_rss: list[int]
    worker_peak: list[float]
    cpu_seconds: float  # user + system CPU of all workers during the measured run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def drive(port: int, path: str, concurrency: int, duration: float) -> tuple[int, int, list[float], float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), errors, latencies, time.monotonic() - started


def peak_memory(port: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return [float(v) for v in re.findall(r'cropapp_worker_peak_resident_memory_bytes\{pid="\d+"\} (\S+)', text)]


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def measure(workers: int, path: str, concurrency: int, duration: float, state: Path) -> Result:
    port = free_port()
    process = appserver.app_process(f"bench-{workers}", state, "127.0.0.1", port, workers=workers)
    process.start(timeout=60)
    try:
        drive(port, path, concurrency, min(3.0, duration))  # warm-up: imports, first decodes
        children = psutil.Process(process.running_pid()).children()
        cpu_before = sum(_cpu(child) for child in children)
        requests, errors, latencies, seconds = drive(port, path, concurrency, duration)
        cpu = sum(_cpu(child) for child in children) - cpu_before
        rss = [child.memory_info().rss for child in children]
        return Result(workers, requests, errors, seconds, latencies, rss, peak_memory(port), cpu)
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of measured load per worker count")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (closed loop, no think time)")
    parser.add_argument("--workers", default="1,2,4", help="comma-separated gunicorn worker counts")
    parser.add_argument("--path", default=appserver.DEFAULT_CROP_PATH, help="request path")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="kubexp-bench-"))
    mib = 1 << 20
    print(f"GET {args.path}  concurrency {args.concurrency}  {args.duration:.0f} s per row  "
          f"{psutil.cpu_count()} CPUs  (threads per worker: CROPAPP_THREADS, default 4)")
    print(f"load average before: {' '.join(f'{v:.1f}' for v in psutil.getloadavg())} "
          f"(other processes on the machine lower req/s; CPU ms/request is robust to that)")
    print(f"{'workers':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'CPU ms/req':>10}  "
          f"{'RSS/worker MiB':>15} {'peak/worker MiB':>16}")
    try:
        for workers in (int(value) for value in args.workers.split(",")):
            r = measure(workers, args.path, args.concurrency, args.duration, state)
            rss = statistics.mean(r.worker_rss) / mib if r.worker_rss else float("nan")
            peak = max(r.worker_peak) / mib if r.worker_peak else float("nan")
            cpu_ms = r.cpu_seconds / max(r.requests, 1) * 1000
            print(f"{workers:>7} {r.rate:>7.1f} {r.percentile(0.5) * 1000:>7.0f} {r.percentile(0.99) * 1000:>7.0f} "
                  f"{r.errors:>6} {cpu_ms:>10.0f}  {rss:>15.0f} {peak:>16.0f}")
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
