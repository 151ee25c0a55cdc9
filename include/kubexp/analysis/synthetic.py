"""Synthetic experiment data of the stored shapes, for the report benchmark, tests and demos.

The numbers follow the paper's qualitative findings, not a claim about any system: a closed
loop saturating at pods x 16 responses/s (section 4.1: 63 ms best response time), istio
slower than native (section 6), a warm-up ramp, a partial last second, and on etcd `disk`
occasional episodes of failures with platform events (section 7, Figs. 6-7).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from kubexp.records import LOAD_SECOND_COLUMNS, Collected, MetricSeries, PlatformEvent
from kubexp.store import attempts, experiments, ingest, suites
from kubexp.suite import Suite

SERVICE_MS = 63.0
POD_RATE_PER_S = 16.0
ISTIO_CAPACITY = 0.55
DISK_CAPACITY = 0.85
EPISODE_PROBABILITY = {"disk": 0.35, "ramdisk": 0.05}


def _throughput(params: dict[str, Any]) -> float:
    think_ms = float(params.get("think_time_ms", 20))
    offered = params["workers"] * 1000.0 / (SERVICE_MS + think_ms)
    capacity = params["pods"] * POD_RATE_PER_S
    capacity *= ISTIO_CAPACITY if params.get("mesh") == "istio" else 1.0
    capacity *= DISK_CAPACITY if params.get("etcd_storage") == "disk" else 1.0
    return float((offered**-4 + capacity**-4) ** -0.25)  # smooth min: the knee of a closed loop


def load_seconds(params: dict[str, Any], *, seconds: int, rng: np.random.Generator,
                 start: datetime | None = None) -> tuple[pd.DataFrame, list[PlatformEvent]]:
    """One experiment's per-second load frame (LOAD_SECOND_COLUMNS) and its platform events."""
    t = np.arange(seconds)
    level = _throughput(params) * (1 - np.exp(-t / 8.0))
    noise_scale = 1.0 + 0.02 * params["workers"] * (1.6 if params.get("mesh") == "istio" else 1.0)
    successes = np.maximum(0.0, level + rng.normal(0, np.sqrt(np.maximum(level, 1.0)) * noise_scale))
    failures = rng.poisson(0.02, seconds).astype(float)
    at = start or datetime(2026, 1, 1, tzinfo=UTC)
    # The rollout happens before the load starts, so its events have negative t (as on the local platform).
    events = [PlatformEvent(-8, at - timedelta(seconds=8), "local-supervisor", "Started", "app-0"),
              PlatformEvent(-3, at - timedelta(seconds=3), "local-supervisor", "Ready", "app-0")]
    if seconds > 60 and rng.random() < EPISODE_PROBABILITY.get(str(params.get("etcd_storage")), 0.05):
        begin = int(rng.integers(30, seconds - 30))
        end = min(seconds - 1, begin + int(rng.integers(10, max(11, seconds // 4))))
        failures[begin:end] += successes[begin:end] * 0.7
        successes[begin:end] *= 0.2
        replica = f"app-{int(rng.integers(0, params['pods']))}"
        events.append(PlatformEvent(begin, at + timedelta(seconds=begin), "local-supervisor", "OOMKilled", replica))
        events.append(PlatformEvent(end, at + timedelta(seconds=end), "local-supervisor", "Restarted", replica))
        for slow in sorted(rng.integers(max(0, begin - 20), end, 3)):
            events.append(PlatformEvent(int(slow), at + timedelta(seconds=int(slow)), "etcd-log", "EtcdSlowRequest",
                                        "etcd-0", "apply request took too long"))
    successes[-1] *= 0.3  # the load stops part-way through its last second
    successes = np.round(successes)
    failures = np.round(failures)
    requests = successes + failures
    throughput = np.maximum(requests, 1.0)
    elapsed = np.maximum(SERVICE_MS, params["workers"] * 1000.0 / throughput - float(params.get("think_time_ms", 20)))
    elapsed = np.where(requests > 0, elapsed * rng.lognormal(0, 0.05, seconds), np.nan)
    frame = pd.DataFrame({
        "t": t, "requests": requests, "successes": successes, "failures": failures,
        "failures_4xx": 0.0, "failures_5xx": failures, "failures_other": 0.0,
        "elapsed_mean_ms": elapsed, "elapsed_p50_ms": elapsed * 0.9, "elapsed_p90_ms": elapsed * 1.6,
        "elapsed_p95_ms": elapsed * 1.9, "elapsed_p99_ms": elapsed * 2.6, "elapsed_max_ms": elapsed * 3.5,
        "latency_mean_ms": elapsed * 0.95, "connect_mean_ms": np.where(requests > 0, 0.4, np.nan),
        "bytes": requests * 5200, "threads": float(params["workers"]),
    })
    served = np.where(successes > 0, elapsed, np.nan)  # the failures are rare: successes take about as long
    for name, factor in (("mean", 1.0), ("p50", 0.9), ("p90", 1.6), ("p95", 1.9), ("p99", 2.6), ("max", 3.5)):
        frame[f"success_elapsed_{name}_ms"] = served * factor
    frame["success_processing_mean_ms"] = served * 0.95 - 0.4
    counts = ["requests", "successes", "failures", "failures_4xx", "failures_5xx", "failures_other", "bytes", "threads"]
    frame[counts] = frame[counts].astype("int64")
    return frame[list(LOAD_SECOND_COLUMNS)], events


def replica_series(params: dict[str, Any], *, seconds: int, rng: np.random.Generator) -> list[MetricSeries]:
    """A replica-count series with a few scrapes missing (so completeness is below 1)."""
    kept = np.sort(rng.choice(seconds, size=max(1, int(seconds * rng.uniform(0.9, 1.0))), replace=False))
    return [MetricSeries("prometheus:synthetic", "replicas", {"deployment": "app"},
                         [(int(t), float(params["pods"])) for t in kept])]


def suite_document(name: str, matrix: dict[str, list[Any]], *, repetitions: int, duration_s: int,
                   analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """A local-platform suite document (as parsed from YAML) for synthetic data."""
    return {"suite": name, "platform": "local", "repetitions": repetitions, "seed": 1,
            "description": "synthetic data (kubexp.analysis.synthetic), not a measurement",
            "defaults": {"duration_s": duration_s}, "matrix": matrix, "analysis": analysis or {},
            "metrics": {"required": ["replicas"], "completeness_min": 0.95}}


def populate(conn: psycopg.Connection, suite: Suite, *, seed: int = 0, unfinished_every: int = 0,
             t0: datetime | None = None) -> int:
    """Load the suite into the store and give its experiments synthetic data through the store's own API.

    Every `unfinished_every`-th experiment (0: none) gets one failed attempt and stays unfinished;
    the others get one attempt with provenance, load rows, events and a metric series, and are
    finished. Returns the number of finished experiments.
    """
    rng = np.random.default_rng(seed)
    suites.sync_suite(conn, suite)
    planned = conn.execute("SELECT e.id::text, sc.params FROM experiment e JOIN scenario sc ON sc.id = e.scenario_id "
                           "WHERE e.suite = %s ORDER BY e.scenario_id, e.repetition", (suite.name,)).fetchall()
    start = t0 or datetime(2026, 1, 1, tzinfo=UTC)
    finished = 0
    for number, (experiment_id, params) in enumerate(planned, start=1):
        attempt_id = attempts.open_attempt(conn, experiment_id, f"synthetic-{number}", 1, "synthetic-host")
        attempts.record_provenance(conn, attempt_id, {"kubexp": {"git_commit": "0" * 40, "dirty": False},
                                                      "generator": "kubexp.analysis.synthetic", "seed": seed})
        if unfinished_every and number % unfinished_every == 0:
            attempts.close_attempt(conn, attempt_id, "failed", "synthetic failure: load servers unreachable")
            continue
        at = start + timedelta(seconds=number * (params["duration_s"] + 60))
        load, events = load_seconds(params, seconds=params["duration_s"], rng=rng, start=at)
        series = replica_series(params, seconds=params["duration_s"], rng=rng)
        ingest.store_experiment_data(conn, experiment_id, attempt_id,
                                     Collected(load=load, events=events, series=series), t0=at)
        experiments.finish_experiment(conn, experiment_id, attempt_id)
        finished += 1
    return finished
