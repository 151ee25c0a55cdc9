"""The one shape every collector produces, whatever its source (JTL, Prometheus, events, logs).

`t` is always whole seconds from the experiment's load start (t = 0). A collector reads a `Window`
and returns `Collected`; the store takes `Collected` (kubexp.store.ingest.store_experiment_data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# Columns of a per-second load frame (kubexp.load.jtl output, store table load_second).
LOAD_SECOND_COLUMNS = (
    "t", "requests", "successes", "failures",
    "failures_4xx", "failures_5xx", "failures_other",
    "elapsed_mean_ms", "elapsed_p50_ms", "elapsed_p90_ms", "elapsed_p95_ms", "elapsed_p99_ms",
    "elapsed_max_ms", "latency_mean_ms", "connect_mean_ms", "bytes", "threads",
    # successful requests only (a fast 503 or refused connection would pull the all-requests figures down);
    # processing = Latency - Connect (time to the first byte after the connection was open)
    "success_elapsed_mean_ms", "success_elapsed_p50_ms", "success_elapsed_p90_ms", "success_elapsed_p95_ms",
    "success_elapsed_p99_ms", "success_elapsed_max_ms", "success_processing_mean_ms",
)
# Exact statistics over every sample of an experiment's JTL (not over per-second values; store table
# load_experiment): percentiles are nearest rank over all samples, resp. all successful ones.
EXPERIMENT_LOAD_COLUMNS = (
    "requests", "successes",
    "elapsed_mean_ms", "elapsed_p50_ms", "elapsed_p90_ms", "elapsed_p95_ms", "elapsed_p99_ms", "elapsed_max_ms",
    "success_elapsed_mean_ms", "success_elapsed_p50_ms", "success_elapsed_p90_ms", "success_elapsed_p95_ms",
    "success_elapsed_p99_ms", "success_elapsed_max_ms", "success_processing_mean_ms",
)


@dataclass(frozen=True)
class MetricSeries:
    """One time series: a named query's result for one label set, per second."""

    source: str  # e.g. "prometheus:local"
    name: str  # the query's name in the suite
    labels: dict[str, str]
    points: list[tuple[int, float]] = field(default_factory=list)  # (t, value), t unique


def completeness(series: MetricSeries, duration_s: int) -> float:
    """A metric series' completeness, the one rule: stored with the series (kubexp.store.ingest), required
    of `metrics.required` series before an experiment finishes (kubexp.collect.prometheus.completeness_problems)
    and shown by the report. It is the share of the scenario's load seconds, 0 <= t < duration_s, that
    have a finite value."""
    if duration_s <= 0:
        raise ValueError(f"completeness window t=0..{duration_s} is empty")
    return len({t for t, value in series.points if 0 <= t < duration_s and math.isfinite(value)}) / duration_s


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


@dataclass(frozen=True)
class Window:
    """What collectors read: t = 0 at `t0` (the load's first sample), platform events and logs from `start`
    (the deploy, so rollout and readiness come with negative t) to `end` (the load's last sample)."""

    t0: datetime
    start: datetime
    end: datetime
    dest_dir: Path  # where collectors archive the raw files they read


@dataclass(frozen=True, eq=False)
class Collected:
    """What every collector returns and the store takes (cf. PerfKitBenchmarker's sample.Sample).

    A kind left None was not collected: storing it keeps that kind's earlier rows, while an empty
    list replaces them with none. `facts` go into the attempt's provenance."""

    load: pd.DataFrame | None = None  # per-second load rows, columns LOAD_SECOND_COLUMNS
    load_whole: dict[str, float | None] | None = None  # EXPERIMENT_LOAD_COLUMNS of the same samples, with load
    series: list[MetricSeries] | None = None
    events: list[PlatformEvent] | None = None
    artifacts: list[Artifact] | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def __add__(self, other: Collected) -> Collected:
        """Both collectors' data: lists joined in order; one load frame at most and no fact named twice."""
        if self.load is not None and other.load is not None:
            raise ValueError("two collectors returned a load frame; an experiment has one")
        twice = sorted(set(self.facts) & set(other.facts))
        if twice:
            raise ValueError(f"two collectors returned the facts {', '.join(twice)}")

        def joined(mine: list[Any] | None, theirs: list[Any] | None) -> list[Any] | None:
            return None if mine is None and theirs is None else [*(mine or []), *(theirs or [])]

        load = self if self.load is not None else other  # the whole-load figures go with their frame
        return Collected(load=load.load, load_whole=load.load_whole,
                         series=joined(self.series, other.series), events=joined(self.events, other.events),
                         artifacts=joined(self.artifacts, other.artifacts), facts={**self.facts, **other.facts})
