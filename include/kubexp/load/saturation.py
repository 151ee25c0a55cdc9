"""Was the load generator the bottleneck? CPU use of the JMeter engines and, in open loop, achieved arrivals.

An engine is the process that sends the requests: the master in a local run, each JMeter server in a
distributed one. Its CPU share is the CPU seconds it used during the master's run divided by the run's
wall time and the host's cores (JVM start-up included, so short runs read a little high). Servers on
this host (loopback addresses, as on the local platform) are measured from /proc; servers on other
hosts are not measured here (recorded as null). A run is flagged when an engine's share reaches
CPU_SHARE_CAP or, in open loop, when fewer than RATE_SHARE_MIN of the intended arrivals were sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

CPU_SHARE_CAP = 0.9  # of all the host's cores
RATE_SHARE_MIN = 0.95  # of the intended arrival rate (open loop)


def host_cores() -> int:
    return len(os.sched_getaffinity(0))


def local_server_pids(servers: Sequence[str]) -> dict[str, int]:
    """PID of the process listening on each loopback JMeter server's port (others are left out)."""
    ports = {int(server.rpartition(":")[2]): server for server in servers
             if server.startswith(("127.", "localhost:"))}
    if not ports:
        return {}
    return {ports[conn.laddr.port]: conn.pid for conn in psutil.net_connections("tcp")
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports and conn.pid}


def cpu_seconds(pids: Mapping[str, int]) -> dict[str, float]:
    used = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[name] = times.user + times.system
    return used


def assess(*, master_cpu_s: float, wall_s: float, servers: Sequence[str], server_cpu_s: Mapping[str, float],
           samples: int, duration_s: float, intended_rate_per_s: float | None,
           cores: int | None = None) -> dict[str, Any]:
    """The generator record of one run (stored in the attempt's provenance under load.generator)."""
    cores = cores or host_cores()
    wall_s = max(wall_s, 1e-9)
    engines: dict[str, float | None] = {"master": master_cpu_s}
    engines.update({server: server_cpu_s.get(server) for server in servers})
    shares = {name: (None if used is None else round(used / wall_s / cores, 3)) for name, used in engines.items()}
    senders = [name for name in shares if name != "master"] if servers else ["master"]
    reasons = [f"JMeter engine {name} used {shares[name]:.0%} of {cores} cores (cap {CPU_SHARE_CAP:.0%})"
               for name in senders if (shares[name] or 0) >= CPU_SHARE_CAP]
    record: dict[str, Any] = {"cores": cores, "wall_s": round(wall_s, 2), "cpu_s": engines, "cpu_share": shares,
                              "cpu_share_cap": CPU_SHARE_CAP}
    if intended_rate_per_s:
        achieved = samples / duration_s if duration_s > 0 else 0.0
        record.update(intended_rate_per_s=intended_rate_per_s, achieved_rate_per_s=round(achieved, 2),
                      rate_share_min=RATE_SHARE_MIN)
        if achieved < RATE_SHARE_MIN * intended_rate_per_s:
            reasons.append(f"{achieved:.1f} arrivals/s sent of {intended_rate_per_s:g} intended "
                           f"(minimum {RATE_SHARE_MIN:.0%})")
    record.update(saturated=bool(reasons), reasons=reasons)
    return record
