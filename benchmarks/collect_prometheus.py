"""Collection time of the Prometheus collector for a 20-minute experiment window, default local queries.

A real Prometheus cannot be made to scrape for 20 minutes in a benchmark, so the window is
backfilled: the real exporters (cropapp under gunicorn behind HAProxy, etcd 3.5) are started,
driven briefly and scraped once; their series (those the default queries read, plus `up`) are
replayed at 1 s resolution over the window, with `--replicas` copies of the app's series, and
turned into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`. A real Prometheus
then serves those blocks, and `kubexp.collect.prometheus.query_all` collects the window
`--repeat` times: printed are wall time (min/median/max), series, points, and the chunked
variant (max 300 points per request) for the cost of splitting.

    .venv/bin/python benchmarks/collect_prometheus.py [--minutes 20] [--replicas 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from kubexp.collect import prometheus, queries
from kubexp.local_services import prometheus_process
from kubexp.platform.local import appserver, haproxy
from kubexp.platform.local.queries import LOCAL_QUERIES
from kubexp.processes import ManagedProcess, free_port
from kubexp.settings import REPO_ROOT

ETCD = REPO_ROOT / ".venv" / "bin" / "etcd"
# The metric names the default local queries read (plus up): everything else is not replayed.
USED = re.compile(r"^(cropapp_|haproxy_backend_http_responses_total|haproxy_backend_active_servers|"
                  r"haproxy_backend_retry_warnings_total|haproxy_server_check_failures_total|etcd_disk_wal_fsync|"
                  r"etcd_disk_backend_commit|etcd_server_leader_changes_seen_total|etcd_server_has_leader|"
                  r"etcd_server_slow_apply_total)")
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def scrape_real_exporters(root: Path) -> dict[str, str]:
    """/metrics text of the app, HAProxy and etcd after a short burst of requests."""
    root.mkdir(parents=True)
    app_port, front, stats = free_port(), free_port(), free_port()
    client, peer = free_port(), free_port()
    app = appserver.app_process("app", root, "127.0.0.1", app_port)
    etcd = ManagedProcess("etcd", [str(ETCD), "--name", "m1", "--data-dir", str(root / "etcd"),
                                   "--listen-client-urls", f"http://127.0.0.1:{client}",
                                   "--advertise-client-urls", f"http://127.0.0.1:{client}",
                                   "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                                   "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                                   "--initial-cluster", f"m1=http://127.0.0.1:{peer}"], root, ports=[client, peer])
    config = root / "haproxy.cfg"
    config.write_text(haproxy.HAProxyConfig(front, stats, [("replica-1", app_port)], 1.0, "native").render())
    proxy = haproxy.process(shutil.which("haproxy") or "haproxy", config, root, [front, stats])
    started: list[ManagedProcess] = []
    try:
        for process in (app, etcd, proxy):
            process.start(timeout=60)
            started.append(process)
        with requests.Session() as session:
            for path in ("/images", "/healthz", "/dimensions/landscape.png", "/nope.png") * 10:
                session.get(f"http://127.0.0.1:{front}{path}", timeout=10)
            return {
                "app": session.get(f"http://127.0.0.1:{app_port}/metrics", timeout=10).text,
                "haproxy": session.get(f"http://127.0.0.1:{stats}/metrics", timeout=10).text,
                "etcd": session.get(f"http://127.0.0.1:{client}/metrics", timeout=10).text,
            }
    finally:
        for process in reversed(started):
            process.stop()


def replay(expositions: dict[str, str], replicas: int, first: int, seconds: int, out: Path) -> int:
    """Write OpenMetrics with every used series at 1 s resolution; returns the number of series."""
    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for job, text in expositions.items():
        copies = range(1, replicas + 1) if job == "app" else [1]
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not USED.match(sample.name) or sample.name.endswith("_created"):
                    continue
                for copy in copies:
                    labels = {**sample.labels, "job": job, "instance": f"{job}-{copy}", "component": job}
                    if job == "app":
                        labels["replica"] = f"replica-{copy}"
                    series.setdefault(sample.name, []).append((labels, float(sample.value)))
        series.setdefault("up", []).extend(
            ({"job": job, "instance": f"{job}-{copy}", "component": job}, 1.0)
            for copy in (range(1, replicas + 1) if job == "app" else [1]))
    count = 0
    with open(out, "w") as stream:
        for name, members in series.items():
            stream.write(f"# TYPE {name} unknown\n")
            counter = name.endswith(COUNTER_SUFFIXES)
            for labels, value in members:
                count += 1
                text = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
                slope = 1 + zlib.crc32(text.encode()) % 50  # a steady, series-specific rate per second
                for t in range(seconds):
                    now = value + slope * t if counter else value * (1 + 0.05 * math.sin(t / 30))
                    stream.write(f"{name}{{{text}}} {now} {first + t}\n")
        stream.write("# EOF\n")
    return count


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--replicas", type=int, default=4, help="copies of the app's series (pods)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="kubexp-bench-collect-"))
    try:
        expositions = scrape_real_exporters(root / "exporters")
        seconds = round(args.minutes * 60)
        # Three hours back: backfilled blocks must not overlap Prometheus' head block.
        t0 = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=250000)
        first = math.floor(t0.timestamp()) - 60
        om = root / "replay.om"
        started = time.perf_counter()
        replayed = replay(expositions, args.replicas, first, seconds + 120, om)
        blocks = root / "prometheus" / "data"  # where prometheus_process keeps its TSDB
        blocks.mkdir(parents=True)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(blocks)],
                       check=True, capture_output=True)
        om.unlink()
        print(f"backfilled {replayed} series x {seconds + 120} s in {time.perf_counter() - started:.1f} s")
        port = free_port()
        server = prometheus_process(root, port)  # the same Prometheus as `kubexp services up`
        server.start(timeout=60)
        try:
            instance = prometheus.PrometheusInstance("bench", f"http://127.0.0.1:{port}")
            chosen = queries.render(LOCAL_QUERIES, {"namespace": "kubexp", "rate_window": "5s"})
            end = t0 + timedelta(seconds=seconds)
            for label, options in (("one request per query", prometheus.CollectOptions()),
                                   ("chunks of 300 points", prometheus.CollectOptions(max_points=300))):
                times = []
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    collected = prometheus.query_all([instance], chosen, t0, end, t0, options)
                    times.append(time.perf_counter() - began)
                points = sum(len(s.points) for s in collected.series)
                print(f"{label}: {len(chosen)} queries, {len(collected.series)} series, {points} points, "
                      f"{sum(collected.non_finite.values())} NaN/Inf dropped; collection "
                      f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s")
            shares = prometheus.completeness(collected.series, seconds)
            print(f"completeness: min {min(shares.values()):.3f}, median {statistics.median(shares.values()):.3f}")
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
