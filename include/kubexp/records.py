"""The one shape every collector produces, whatever its source (JTL, Prometheus, events).

`t` is always whole seconds from the experiment's load start (t = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# Columns of a per-second load frame (kubexp.load.jtl output, store table load_second).
LOAD_SECOND_COLUMNS = (
    "t", "requests", "successes", "failures",
    "failures_4xx", "failures_5xx", "failures_other",
    "elapsed_mean_ms", "elapsed_p50_ms", "elapsed_p90_ms", "elapsed_p95_ms", "elapsed_p99_ms",
    "elapsed_max_ms", "latency_mean_ms", "connect_mean_ms", "bytes", "threads",
)


@dataclass(frozen=True)
class MetricSeries:
    """One time series: a named query's result for one label set, per second."""

    source: str  # e.g. "prometheus:local"
    name: str  # the query's name in the suite
    labels: dict[str, str]
    points: list[tuple[int, float]] = field(default_factory=list)  # (t, value), t unique


@dataclass(frozen=True)
class PlatformEvent:
    """Something the platform did: an OOM kill, a restart, a probe failure, an etcd warning."""

    t: int
    at: datetime  # wall clock, timezone-aware UTC
    source: str  # e.g. "local-supervisor", "kubernetes", "etcd-log"
    kind: str  # e.g. "OOMKilled", "Restarted", "Unhealthy", "EtcdSlowRequest"
    obj: str  # what it happened to: pod/replica name, node, etcd member
    message: str = ""


@dataclass(frozen=True)
class Artifact:
    """A raw file kept with an experiment (JTL, logs, manifests)."""

    kind: str
    path: str
    sha256: str
    size: int
