"""Benchmark: ingest a synthetic paper-sized data set through the store and time the summary views.

Default: 1,400 experiments x 1,200 s (the paper's section 6 volume: about 1.7 M load_second rows)
plus 3 metric series of 1,200 points each per experiment, stored with the same calls the DAG makes
(open_attempt, store_experiment_data, finish_experiment). Rows/s counts load rows plus metric points;
a series' points are stored as two arrays on its row (sql/0002_metric_points_as_arrays.sql).
Starts a throwaway PostgreSQL 15 unless --url is given. Prints figures; asserts nothing
(goals: ingest >= 500k rows/s, scenario_summary < 1 s).

    .venv/bin/python benchmarks/store_ingest.py [--experiments 1400] [--seconds 1200] [--series 3] [--url URL]
        [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import figures
import numpy as np
import pandas as pd
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from scratch_postgres import database

from kubexp.records import LOAD_SECOND_COLUMNS, Collected, MetricSeries
from kubexp.store import attempts, db, experiments, ingest, migrations, suites
from kubexp.suite import Suite, parse_suite

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def bench_suite(experiments_wanted: int, seconds: int) -> Suite:
    """A suite shaped like the paper's: pods x workers x mesh, enough scenarios x 5 repetitions."""
    repetitions = 5
    scenarios = -(-experiments_wanted // repetitions)
    workers = list(range(6, 6 * 20 + 1, 6))
    pods = list(range(1, -(-scenarios // (2 * len(workers))) + 1))
    return parse_suite({
        "suite": "bench", "platform": "local", "repetitions": repetitions, "seed": 1,
        "defaults": {"duration_s": seconds, "pods_max": max(pods)},
        "matrix": {"pods": pods, "workers": workers, "mesh": ["native", "istio"]},
        "analysis": {"warmup_s": 60, "cooldown_s": 30},
    }, "benchmarks/bench.yaml")


def load_frame(rng: np.random.Generator, seconds: int, workers: int) -> pd.DataFrame:
    requests = rng.poisson(3 * workers, seconds)
    failures = rng.binomial(requests, 0.02)
    frame = pd.DataFrame({
        "t": np.arange(seconds), "requests": requests, "successes": requests - failures, "failures": failures,
        "failures_4xx": 0, "failures_5xx": failures, "failures_other": 0,
        "bytes": requests * 18_000, "threads": workers,
    })
    base = rng.gamma(4.0, 20.0, seconds)
    for i, column in enumerate(c for c in LOAD_SECOND_COLUMNS if c.endswith("_ms")):
        frame[column] = np.where(requests > 0, base * (1 + 0.3 * i), np.nan)
    return frame[list(LOAD_SECOND_COLUMNS)]


def metric_series(rng: np.random.Generator, seconds: int, count: int) -> list[MetricSeries]:
    t = range(seconds)
    return [MetricSeries("prometheus:bench", f"metric_{n}", {"pod": f"app-{n}"},
                         list(zip(t, rng.random(seconds).tolist(), strict=True))) for n in range(count)]


def timed(conn, query: str, params: tuple = ()) -> tuple[float, int]:
    started = time.perf_counter()
    rows = conn.execute(query, params).fetchall()
    return time.perf_counter() - started, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=1400)
    parser.add_argument("--seconds", type=int, default=1200)
    parser.add_argument("--series", type=int, default=3, help="metric series per experiment")
    parser.add_argument("--url", help="an empty database to use instead of a throwaway server")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list (make bench)")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with database(args.url, "kubexp-bench-pg-") as url:
        migrations.upgrade(url)
        with db.connect(url) as conn:
            suite = bench_suite(args.experiments, args.seconds)
            suites.sync_suite(conn, suite)
            workers = {s.id: s.params["workers"] for s in suite.scenarios()}
            planned = conn.execute(
                "SELECT id::text, scenario_id FROM experiment WHERE suite = 'bench' ORDER BY scenario_id, repetition "
                "LIMIT %s", (args.experiments,)).fetchall()
            store_s = finish_s = 0.0
            load_rows = points = 0
            for n, (experiment_id, scenario_id) in enumerate(planned):
                frame = load_frame(rng, args.seconds, workers[scenario_id])
                series = metric_series(rng, args.seconds, args.series)
                attempt_id = attempts.open_attempt(conn, experiment_id, "bench", 1, "bench-host")
                started = time.perf_counter()
                ingest.store_experiment_data(conn, experiment_id, attempt_id, Collected(load=frame, series=series),
                                             t0=T0)
                stored = time.perf_counter()
                experiments.finish_experiment(conn, experiment_id, attempt_id)
                store_s += stored - started
                finish_s += time.perf_counter() - stored
                load_rows += len(frame)
                points += sum(len(s.points) for s in series)
                if (n + 1) % 200 == 0:
                    print(f"  {n + 1} experiments stored", flush=True)
            conn.execute("VACUUM ANALYZE")
            total = load_rows + points
            print(f"load average (1 min)   {os.getloadavg()[0]:>12.1f}    (2 cores; other jobs share the machine)")
            print(f"experiments            {len(planned):>12,}")
            print(f"load_second rows       {load_rows:>12,}")
            print(f"metric points          {points:>12,}")
            print(f"store_experiment_data  {store_s:>12.1f} s  = {total / store_s:,.0f} rows/s, load rows + metric "
                  f"points ({store_s / len(planned) * 1000:.1f} ms per experiment, COPY, one transaction each)")
            print(f"finish_experiment      {finish_s:>12.1f} s  ({finish_s / len(planned) * 1000:.1f} ms per "
                  f"experiment, incl. its steady-state aggregate)")
            for label, query in [
                ("scenario_summary", "SELECT * FROM scenario_summary WHERE suite = %s"),
                ("experiment_summary", "SELECT * FROM experiment_summary WHERE suite = %s"),
            ]:
                best = min(timed(conn, query, ("bench",)) for _ in range(3))
                print(f"{label:<22} {best[0]:>12.3f} s  ({best[1]} rows, best of 3)")
            with conn.transaction():  # what a plain (non-materialised) view would cost: aggregate every row
                started = time.perf_counter()
                conn.execute("SELECT refresh_experiment_aggregate(array(SELECT id FROM experiment "
                             "WHERE suite = 'bench' AND status = 'finished'))")
                print(f"aggregate from raw rows {time.perf_counter() - started:>11.3f} s  (all experiments: the cost "
                      f"a plain view would pay per query)")
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
            print(f"database size          {size[0] if size else '?':>12}")
            copy_s = psql_copy(conn, url)
            print(f"psql \\copy of the same rows {copy_s:>7.1f} s  (load_second and metric_series rows, CSV)")
            summary_s = min(timed(conn, "SELECT * FROM scenario_summary WHERE suite = %s", ("bench",))[0]
                            for _ in range(3))
            group_by_s = min(timed(conn, PLAIN_GROUP_BY)[0] for _ in range(3))
            print(f"plain GROUP BY         {group_by_s:>12.3f} s  (per scenario over load_second, best of 3)")
            settings = (f"{len(planned):,} experiments x {args.seconds} s ({load_rows:,} load rows + {points:,} metric "
                        f"points), PostgreSQL 15 on this machine")
            figures.write(args.json, [
                figures.figure("store ingest through the per-experiment calls", round(store_s, 2), "s",
                               peer="psql \\copy of the same rows", peer_value=round(copy_s, 2),
                               settings=f"{settings}; kubexp {total / store_s:,.0f} rows/s"),
                figures.figure("scenario summary query", round(summary_s, 4), "s",
                               peer="plain GROUP BY over load_second", peer_value=round(group_by_s, 4),
                               settings=f"{settings}; best of 3"),
            ])


PLAIN_GROUP_BY = """
    SELECT e.scenario_id, count(DISTINCT e.id) AS experiments, count(*) AS seconds, sum(l.requests) AS requests,
           sum(l.successes) AS successes, avg(l.successes) AS successes_per_s_mean,
           stddev_samp(l.successes) AS successes_per_s_std,
           sum(l.elapsed_mean_ms * l.requests) / nullif(sum(l.requests), 0) AS elapsed_mean_ms
    FROM load_second l JOIN experiment e ON e.id = l.experiment_id AND l.attempt_id = e.finished_attempt_id
    WHERE e.suite = 'bench' AND e.status = 'finished'
    GROUP BY e.scenario_id
"""


def psql_copy(conn, url: str) -> float:
    """Seconds psql's \\copy takes to load the bench's load_second and metric_series rows into copies of the tables."""
    params = conninfo_to_dict(url)
    env = {**os.environ, "PGHOST": str(params.get("host", "")), "PGPORT": str(params.get("port", "")),
           "PGUSER": str(params.get("user", "")), "PGPASSWORD": str(params.get("password", "")),
           "PGDATABASE": str(params.get("dbname", ""))}
    with tempfile.TemporaryDirectory(prefix="kubexp-bench-copy-") as folder:
        os.chmod(folder, 0o700)
        elapsed = 0.0
        for table in ("load_second", "metric_series"):
            path = Path(folder) / f"{table}.csv"
            with conn.cursor().copy(sql.SQL("COPY (SELECT * FROM {} WHERE experiment_id IN (SELECT id FROM experiment "
                                            "WHERE suite = 'bench')) TO STDOUT (FORMAT csv)").format(
                                                sql.Identifier(table))) as copy, open(path, "wb") as out:
                for data in copy:
                    out.write(data)
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(f"copy_{table}"), sql.Identifier(table)))
            conn.commit()
            started = time.perf_counter()
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                            f"\\copy copy_{table} FROM '{path}' (FORMAT csv)"], env=env, check=True)
            elapsed += time.perf_counter() - started
    return elapsed


if __name__ == "__main__":
    main()
