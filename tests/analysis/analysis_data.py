"""Synthetic analysis data of the documented shapes: frames in memory, or suites in a real store."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import yaml

from kubexp.analysis import steady, synthetic
from kubexp.analysis.figures import GROUPING_PARAMETERS
from kubexp.local_services import Postgres
from kubexp.records import LOAD_SECOND_COLUMNS, Collected, MetricSeries, PlatformEvent
from kubexp.store import attempts, db, experiments, ingest, migrations, suites
from kubexp.suite import PARAMETER_DEFAULTS, Suite, load_suite

PAPER_ETCD_MATRIX = {"pods": [10, 20], "workers": [60, 120], "mesh": ["native", "istio"],
                     "etcd_storage": ["ramdisk", "disk"]}


@dataclass
class Frames:
    experiments: pd.DataFrame
    seconds: pd.DataFrame
    events: pd.DataFrame
    windows: pd.DataFrame
    steady: pd.DataFrame
    per_experiment: pd.DataFrame


def build_frames(matrix: dict[str, list[object]], repetitions: int, seconds: int = 240, seed: int = 1) -> Frames:
    rng = np.random.default_rng(seed)
    experiments, frames, events = [], [], []
    for index, combo in enumerate(itertools.product(*matrix.values())):
        params = {**PARAMETER_DEFAULTS, "duration_s": seconds, **dict(zip(matrix, combo, strict=True))}
        params["pods_max"] = params["pods"]
        for repetition in range(1, repetitions + 1):
            experiment_id = f"s{index}-r{repetition}"
            load, happened = synthetic.load_seconds(params, seconds=seconds, rng=rng)
            experiments.append({"experiment_id": experiment_id, "scenario_id": f"s{index:02d}", "scenario_index": index,
                                "repetition": repetition, "status": "finished", **params})
            frames.append(load.assign(experiment_id=experiment_id))
            events += [{"experiment_id": experiment_id, "t": e.t, "at": e.at, "source": e.source, "kind": e.kind,
                        "obj": e.obj, "message": e.message} for e in happened]
    experiment_frame = pd.DataFrame(experiments)
    second_frame = pd.concat(frames, ignore_index=True)
    windows = steady.steady_windows(second_frame, warmup_s=20, cooldown_s=5)
    kept = steady.trim(second_frame, windows)
    params = [c for c in ["scenario_id", *GROUPING_PARAMETERS] if c in experiment_frame]
    kept = kept.merge(experiment_frame[["experiment_id", *params]], on="experiment_id")
    per_experiment = steady.summarize(kept).merge(experiment_frame, on="experiment_id")
    event_frame = pd.DataFrame(events, columns=["experiment_id", "t", "at", "source", "kind", "obj", "message"])
    return Frames(experiment_frame, second_frame, event_frame, windows, kept, per_experiment)


@dataclass(frozen=True)
class StoredSuite:
    """A results database holding a suite with finished and unfinished experiments."""

    url: str
    suite: Suite
    finished: int


def store_synthetic_suite(server: Postgres, folder: Path, name: str, matrix: dict[str, list[object]], *,
                          repetitions: int, duration_s: int, analysis: dict[str, object] | None = None,
                          unfinished_every: int = 0) -> StoredSuite:
    database = "a_" + secrets.token_hex(6)
    server.create_databases(database)
    url = server.url(database)
    migrations.upgrade(url)
    document = synthetic.suite_document(name, matrix, repetitions=repetitions, duration_s=duration_s,
                                        analysis=analysis)
    document["description"] = "synthetic <b>data</b> & not a measurement"  # checks HTML escaping
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    suite = load_suite(path)
    with db.connect(url) as conn:
        finished = synthetic.populate(conn, suite, seed=5, unfinished_every=unfinished_every)
    return StoredSuite(url, suite, finished)


def constant_load(seconds: int, successes: float, *, failures: int = 0, p99_ms: float = 100.0) -> pd.DataFrame:
    """A per-second load frame with `successes` successful responses in every second (rounded)."""
    ok = np.full(seconds, round(successes), dtype=np.int64)
    bad = np.full(seconds, failures, dtype=np.int64)
    frame = pd.DataFrame({
        "t": np.arange(seconds), "requests": ok + bad, "successes": ok, "failures": bad, "failures_4xx": 0,
        "failures_5xx": bad, "failures_other": 0, "elapsed_mean_ms": p99_ms / 2, "elapsed_p50_ms": p99_ms / 2,
        "elapsed_p90_ms": p99_ms * 0.8, "elapsed_p95_ms": p99_ms * 0.9, "elapsed_p99_ms": p99_ms,
        "elapsed_max_ms": p99_ms * 1.5, "latency_mean_ms": p99_ms / 2, "connect_mean_ms": 0.4,
        "bytes": (ok + bad) * 100, "threads": 2})
    for column in [c for c in frame.columns if c.startswith("elapsed_")]:
        frame[f"success_{column}"] = frame[column]
    frame["success_processing_mean_ms"] = p99_ms / 2 - 0.4
    return frame[list(LOAD_SECOND_COLUMNS)]


def store_values(conn: psycopg.Connection, suite: Suite, values: dict[int, list[float]], *,
                 oom_kills: dict[int, list[int]] | None = None, memory: dict[int, list[float]] | None = None) -> None:
    """Load `suite` and finish its experiments with constant per-second successes: values[scenario index] holds
    one value per repetition (fewer values leave the rest unfinished); optional OOM kills and a `memory` series."""
    suites.sync_suite(conn, suite)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    duration = suite.scenarios()[0].params["duration_s"]
    for scenario in suite.scenarios():
        rows = conn.execute("SELECT id::text FROM experiment WHERE suite = %s AND scenario_id = %s ORDER BY repetition",
                            (suite.name, scenario.id)).fetchall()
        given = values.get(scenario.index, [])
        for repetition, ((experiment_id,), value) in enumerate(zip(rows[:len(given)], given, strict=True), start=1):
            attempt_id = attempts.open_attempt(conn, experiment_id, f"run-{scenario.index}-{repetition}", 1, "host")
            at = start + timedelta(minutes=len(rows) * scenario.index + repetition)
            kills = (oom_kills or {}).get(scenario.index, [])
            events = [PlatformEvent(3, at, "local-supervisor", "OOMKilled", "app-0")
                      for _ in range(kills[repetition - 1] if repetition <= len(kills) else 0)]
            level = (memory or {}).get(scenario.index, [])
            series = [MetricSeries("prometheus:test", "memory", {"replica": "0"},
                                   [(t, level[repetition - 1]) for t in range(duration)])] if level else []
            ingest.store_experiment_data(conn, experiment_id, attempt_id,
                                         Collected(load=constant_load(duration, value), events=events, series=series),
                                         t0=at)
            experiments.finish_experiment(conn, experiment_id, attempt_id)
