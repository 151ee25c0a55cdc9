"""Figures of the local platform on this machine, from real runs.

Prints
- replicas started per second (deploy until every replica answers /healthz itself),
- deploy-to-ready time (deploy until rollout_ready: HAProxy's first passed checks + a crop),
  with the default 10 s readiness period,
- teardown time,
- a two-scenario comparison, 64 MiB vs 512 MiB per replica, under the same JMeter load:
  requests, successes, 5xx, other failures, throughput, latency, OOM kills, restarts.

    .venv/bin/python benchmarks/local_platform.py [--pods 6] [--duration 30] [--workers 8]

Everything (replicas, HAProxy, etcd, JMeter) shares this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubexp.load import jmeter, jtl
from kubexp.platform.local import LocalPlatform, appserver
from kubexp.platform.local.supervisor import Deployment


def timed_deploy(platform: LocalPlatform, params: dict[str, Any]) -> tuple[float, float]:
    """Seconds until every replica serves /healthz itself, and until rollout_ready."""
    started = time.monotonic()
    platform.deploy("benchmark", params)
    ports = [spec.port for spec in Deployment.load(platform.state_dir / "deployment.json").replicas]
    serving = ready = None
    while ready is None:
        now = time.monotonic() - started
        if serving is None and all(appserver.healthy("127.0.0.1", port) for port in ports):
            serving = now
        if serving is not None and platform.rollout_ready(params):
            ready = time.monotonic() - started
        if now > 120:
            raise SystemExit(f"not ready after 120 s; see {platform.state_dir / 'logs'}")
        time.sleep(0.05)
    return serving, ready


def timed_teardown(platform: LocalPlatform) -> float:
    started = time.monotonic()
    platform.teardown()
    return time.monotonic() - started


def startup_figures(home: Path, pods: int) -> None:
    params = {"pods": pods, "memory_limit_mib": 256, "cpu_limit_millicores": 1000}
    platform = LocalPlatform({}, home / "startup")
    serving, ready = timed_deploy(platform, params)
    print(f"replicas started per second : {pods / serving:.1f}  ({pods} replicas serving after {serving:.2f} s)")
    print(f"teardown ({pods} replicas)      : {timed_teardown(platform):.2f} s")
    readies, teardowns = [], []
    for _ in range(3):
        platform = LocalPlatform({}, home / "ready")
        readies.append(timed_deploy(platform, {**params, "pods": 2})[1])
        teardowns.append(timed_teardown(platform))
    print(f"deploy-to-ready (2 replicas, 10 s readiness period): "
          f"{', '.join(f'{r:.2f}' for r in readies)} s (mean {statistics.mean(readies):.2f})")
    print(f"teardown (2 replicas + HAProxy): mean {statistics.mean(teardowns):.2f} s")


def scenario(home: Path, memory_limit_mib: int, duration: int, workers: int) -> dict[str, Any]:
    params = {"pods": 2, "pods_max": 2, "memory_limit_mib": memory_limit_mib, "cpu_limit_millicores": 1000,
              "workers": workers, "think_time_ms": 20, "duration_s": duration, "mesh": "native",
              "etcd_storage": "ramdisk", "etcd_fsync_delay_ms": 0, "connect_timeout_ms": 2000,
              "response_timeout_ms": 10000, "arrival_rate_per_s": None}
    platform = LocalPlatform({}, home / f"mem-{memory_limit_mib}")
    try:
        platform.configure_etcd(params)
        timed_deploy(platform, params)
        results = home / f"results-{memory_limit_mib}"
        run = jmeter.run_load(params, platform.endpoint(), results, servers=None, plan=None,
                              request_path=appserver.DEFAULT_CROP_PATH, sample_sender_mode="StrippedBatch")
        frame = jtl.aggregate(run.jtl, run.t0_ms).frame
        events = Counter(e.kind for e in platform.events(run.t0, run.ended_at, run.t0))
    finally:
        platform.teardown()
    requests = int(frame["requests"].sum())
    weights = frame["requests"].where(frame["requests"] > 0)
    return {
        "requests": requests, "successes": int(frame["successes"].sum()),
        "failures_5xx": int(frame["failures_5xx"].sum()), "failures_other": int(frame["failures_other"].sum()),
        "successes_per_s": float(frame["successes"].sum() / duration),
        "elapsed_mean_ms": float((frame["elapsed_mean_ms"] * weights).sum() / weights.sum()),
        "OOMKilled": events["OOMKilled"], "Restarted": events["Restarted"], "Unhealthy": events["Unhealthy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=6)
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    # On tmpfs: JMeter's results must be on a RAM disk (kubexp.load); etcd's `disk` data stays in /var/tmp.
    with tempfile.TemporaryDirectory(prefix="kubexp-bench-", dir="/dev/shm") as tmp:
        home = Path(tmp)
        os.environ["KUBEXP_HOME"] = str(home)  # targets files go to this run's own folder
        print(f"== local platform, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
              f"(other work on this machine slows every figure)")
        startup_figures(home, args.pods)
        print(f"== 64 MiB vs 512 MiB: 2 replicas, 1000m CPU each, native, {args.workers} JMeter threads, "
              f"20 ms think time, {args.duration} s")
        rows = {mib: scenario(home, mib, args.duration, args.workers) for mib in (64, 512)}
        print(f"{'':<18}" + "".join(f"{f'{mib} MiB':>12}" for mib in rows))
        for key in rows[64]:
            cells = "".join(f"{rows[mib][key]:>12.1f}" if isinstance(rows[mib][key], float)
                            else f"{rows[mib][key]:>12}" for mib in rows)
            print(f"{key:<18}{cells}")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
