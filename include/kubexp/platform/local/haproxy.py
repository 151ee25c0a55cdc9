"""HAProxy as the Service in front of the replicas (and, for mesh=istio, as the retry policy).

Health checks behave like a readiness probe: `inter` = the probe period, `fall 1 rise 1`,
so a replica that died keeps receiving traffic until its next failed check, which is the
stale-endpoint window the paper's first failure mode is about.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import requests

from kubexp.processes import ManagedProcess, tool_version

BACKEND = "replicas"
# kube-proxy has none; the load's response timeout ends a request first, unless it is 0 (none)
NATIVE_SERVER_TIMEOUT_S = 60
# mesh=istio: what the manifests' retryOn "5xx" means to Envoy (any 5xx answer, or none: connect failure,
# reset, per-try timeout), as far as HAProxy's retry-on can say it
RETRY_ON = "conn-failure empty-response response-timeout 500 501 502 503 504"


@dataclass(frozen=True)
class HAProxyConfig:
    frontend_port: int
    stats_port: int  # Prometheus exporter (/metrics) and CSV stats (/stats;csv)
    servers: list[tuple[str, int]]  # (replica name, port)
    health_check_interval_s: float
    mesh: str  # "native" or "istio"
    connect_timeout_ms: int = 2000
    retry_attempts: int = 3
    retry_per_try_timeout_s: float = 2.0
    probe_path: str = "/healthz"

    def render(self) -> str:
        inter_ms = max(1, round(self.health_check_interval_s * 1000))
        if self.mesh == "istio":
            # Stands in for a VirtualService retry policy: attempts, per-try timeout, retryOn. Istio's "5xx"
            # covers every 5xx; HAProxy retries on 500-504 only (its retry-on takes no other 5xx code).
            routing = [
                f"retries {self.retry_attempts}",
                "option redispatch 1",
                f"retry-on {RETRY_ON}",
                f"timeout server {round(self.retry_per_try_timeout_s * 1000)}ms",
            ]
        else:
            # A ClusterIP Service does not retry: a request sent to a dead replica fails.
            routing = ["retries 0", f"timeout server {NATIVE_SERVER_TIMEOUT_S}s"]
        lines = [
            "global",
            "    maxconn 4096",
            "defaults",
            "    mode http",
            f"    timeout connect {self.connect_timeout_ms}ms",
            "    timeout client 120s",
            f"    timeout server {NATIVE_SERVER_TIMEOUT_S}s",
            "    timeout check 2s",
            "frontend app",
            f"    bind 127.0.0.1:{self.frontend_port}",
            f"    default_backend {BACKEND}",
            "frontend monitoring",
            f"    bind 127.0.0.1:{self.stats_port}",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    stats enable",
            "    stats uri /stats",
            f"backend {BACKEND}",
            "    balance roundrobin",
            f"    option httpchk GET {self.probe_path}",
            "    http-check expect status 200",
            f"    default-server inter {inter_ms}ms fall 1 rise 1",
            *(f"    {line}" for line in routing),
            *(f"    server {name} 127.0.0.1:{port} check" for name, port in self.servers),
        ]
        return "\n".join(lines) + "\n"


def process(binary: str, config_file: Path, state_dir: Path, ports: list[int]) -> ManagedProcess:
    stats_port = ports[-1]
    return ManagedProcess(
        name="haproxy", argv=[binary, "-f", str(config_file), "-db"], state_dir=state_dir, ports=ports,
        ready=lambda: server_states(stats_port) is not None,
    )


@dataclass(frozen=True)
class ServerState:
    name: str
    status: str  # "UP", "DOWN", "MAINT", "UP 1/2" ...
    check_status: str  # "L7OK", "L4CON", "INI" ...
    check_code: str
    last_check: str

    @property
    def checked_up(self) -> bool:
        """UP and confirmed by a completed health check (not merely assumed at start)."""
        return self.status.startswith("UP") and self.check_status.startswith("L7OK")


def parse_stats_csv(text: str) -> list[ServerState]:
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return [
        ServerState(row["svname"], row.get("status", ""), row.get("check_status", "").strip("* "),
                    row.get("check_code", ""), row.get("last_chk", ""))
        for row in rows if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND")
    ]


def server_states(stats_port: int, timeout: float = 1.0) -> list[ServerState] | None:
    """The backend's servers as HAProxy sees them; None if HAProxy does not answer."""
    try:
        response = requests.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=timeout)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    return parse_stats_csv(response.text)


def version(binary: str) -> str:
    return tool_version([binary, "-v"], r"version (\S+)")
