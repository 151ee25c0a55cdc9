"""The JTL benchmark's contenders other than the `kubexp` command, one per process (see jtl_ingest.py).

    python benchmarks/jtl_peers.py NAME JTL OUT    # per-second statistics to OUT (Parquet), whole-file ones to
                                                   # OUT.whole.json (whole_path)

Each imports only what it uses, inside its function: start-up is part of what is measured. Like kubexp, each
computes per second the statistics of all requests and of the successful ones (elapsed mean, nearest-rank
percentiles, max; processing time Latency - Connect), and the same over the whole file (kubexp's
`JtlResult.whole`): every percentile exact, from the sorted values.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PERCENTILES = (50, 90, 95, 99)
READ = ("timeStamp", "elapsed", "success", "responseCode", "bytes", "allThreads", "Latency", "Connect", "threadName")
ENGINE_REGEX = r"^(\S+:\d+)-"


def whole_path(out: Path) -> Path:
    """Where a contender writes its whole-file statistics (kubexp: `kubexp jtl aggregate --whole`)."""
    return out.with_name(out.name + ".whole.json")


def _write_whole(out: Path, whole: dict[str, Any]) -> None:
    whole_path(out).write_text(json.dumps({name: None if value is None else float(value)
                                           for name, value in whole.items()}))


def _kubexp_collect(path: Path, out: Path) -> None:
    """What an experiment does: the load step aggregates from the smallest timeStamp and keeps the result
    beside the JTL (t0 and the end come from it); collect's aggregate from that t0 reads it back."""
    from kubexp.load.jtl import aggregate, aggregate_and_keep, kept_path

    try:
        loaded = aggregate_and_keep(path)
        collected = aggregate(path, loaded.t0_ms)
        collected.frame.to_parquet(out)
        _write_whole(out, collected.whole)
    finally:
        kept_path(path).unlink(missing_ok=True)


def _polars(path: Path, out: Path) -> None:
    import polars as pl

    types = {name: pl.Int64 for name in ("timeStamp", "elapsed", "bytes", "allThreads", "Latency", "Connect")}
    samples = pl.scan_csv(path, schema_overrides={**types, "success": pl.Boolean, "responseCode": pl.String,
                                                  "threadName": pl.String}).select(READ)
    t0 = samples.select(pl.col("timeStamp").min()).collect().item()
    timed = samples.with_columns(t=(pl.col("timeStamp") - t0) // 1000)
    ok = pl.col("success")
    failed, code = ~ok, pl.col("responseCode")

    def distribution(prefix: str, elapsed: pl.Expr, count: pl.Expr) -> dict[str, pl.Expr]:
        ordered = elapsed.sort()
        return {f"{prefix}elapsed_mean_ms": elapsed.mean(),
                **{f"{prefix}elapsed_p{p}_ms": ordered.get((count * p + 99) // 100 - 1, null_on_oob=True)
                   for p in PERCENTILES},
                f"{prefix}elapsed_max_ms": elapsed.max()}

    count, successes = pl.len().cast(pl.Int64), ok.sum().cast(pl.Int64)
    figures = {**distribution("", pl.col("elapsed"), count),
               **distribution("success_", pl.col("elapsed").filter(ok), successes),
               "success_processing_mean_ms": (pl.col("Latency") - pl.col("Connect")).filter(ok).mean()}
    per_second = timed.group_by("t").agg(
        requests=count, successes=successes,
        failures_4xx=(failed & code.str.contains(r"^4\d\d$")).sum(),
        failures_5xx=(failed & code.str.contains(r"^5\d\d$")).sum(),
        latency_mean_ms=pl.col("Latency").mean(), connect_mean_ms=pl.col("Connect").mean(), bytes=pl.col("bytes").sum(),
        **figures)
    threads = (timed.with_columns(engine=pl.col("threadName").str.extract(ENGINE_REGEX, 1).fill_null(""))
               .group_by("t", "engine").agg(pl.col("allThreads").max())
               .group_by("t").agg(threads=pl.col("allThreads").sum()))
    whole = samples.select(requests=count, successes=successes, **figures)
    seconds, overall = pl.collect_all([per_second.join(threads, on="t").sort("t"), whole], engine="streaming")
    seconds.write_parquet(out)
    _write_whole(out, overall.row(0, named=True))


def _duckdb_figures(prefix: str, only: str) -> str:
    """Elapsed mean, nearest-rank percentiles (1-based list index) and max of the rows that pass `only`."""
    count, ordered = f"count(*) FILTER ({only})", f"list_sort(list(elapsed) FILTER ({only}))"
    return ", ".join([f"avg(elapsed) FILTER ({only}) AS {prefix}elapsed_mean_ms",
                      *(f"{ordered}[({count} * {p} + 99) // 100] AS {prefix}elapsed_p{p}_ms" for p in PERCENTILES),
                      f"max(elapsed) FILTER ({only}) AS {prefix}elapsed_max_ms"])


DUCKDB_FIGURES = (f"count(*) AS requests, count(*) FILTER (success) AS successes, {_duckdb_figures('', 'true')}, "
                  f"{_duckdb_figures('success_', 'success')}, "
                  "avg(Latency - Connect) FILTER (success) AS success_processing_mean_ms")
DUCKDB_SQL = f"""
WITH first AS (SELECT min(timeStamp) AS t0 FROM samples),
timed AS (SELECT (timeStamp - t0) // 1000 AS t, * FROM samples, first),
per_second AS (
  SELECT t, {DUCKDB_FIGURES},
         count(*) FILTER (NOT success AND regexp_full_match(responseCode, '4[0-9][0-9]')) AS failures_4xx,
         count(*) FILTER (NOT success AND regexp_full_match(responseCode, '5[0-9][0-9]')) AS failures_5xx,
         avg(Latency) AS latency_mean_ms, avg(Connect) AS connect_mean_ms, sum(bytes) AS bytes
  FROM timed GROUP BY t),
engines AS (SELECT t, max(allThreads) AS peak FROM timed GROUP BY t, regexp_extract(threadName, '{ENGINE_REGEX}', 1))
SELECT per_second.*, threads FROM per_second JOIN (SELECT t, sum(peak) AS threads FROM engines GROUP BY t) USING (t)
ORDER BY t
"""


def _duckdb(path: Path, out: Path) -> None:
    import duckdb

    with duckdb.connect() as con:
        con.execute(f"SET threads = {len(os.sched_getaffinity(0))}")
        # read once: the per-second and the whole-file statistics both come from it
        con.execute(f"CREATE TEMP TABLE samples AS SELECT {', '.join(READ)} "
                    "FROM read_csv(?, header = true, auto_detect = true)", [str(path)])
        con.execute(DUCKDB_SQL).df().to_parquet(out)
        whole = con.execute(f"SELECT {DUCKDB_FIGURES} FROM samples").df()
        _write_whole(out, {name: None if value != value else value for name, value in whole.iloc[0].items()})


def _pandas(path: Path, out: Path) -> None:
    """The paper's way: read the CSV into a DataFrame, group by second."""
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(path, usecols=list(READ), dtype={"responseCode": str, "threadName": str})
    frame["t"] = (frame["timeStamp"] - frame["timeStamp"].min()) // 1000
    frame = frame.sort_values(["t", "elapsed"], kind="stable", ignore_index=True)
    code, failed = frame["responseCode"], ~frame["success"]
    frame["f4"] = failed & code.str.fullmatch(r"4\d\d")
    frame["f5"] = failed & code.str.fullmatch(r"5\d\d")
    result = frame.groupby("t").agg(requests=("elapsed", "size"), successes=("success", "sum"),
                                    failures_4xx=("f4", "sum"), failures_5xx=("f5", "sum"),
                                    latency_mean_ms=("Latency", "mean"), connect_mean_ms=("Connect", "mean"),
                                    bytes=("bytes", "sum"))
    ok = frame[frame["success"]]
    whole: dict[str, Any] = {"requests": len(frame), "successes": len(ok)}
    for prefix, rows in (("", frame), ("success_", ok)):
        grouped = rows.groupby("t")["elapsed"]
        counts = grouped.size().reindex(result.index, fill_value=0).to_numpy()
        result[f"{prefix}elapsed_mean_ms"] = grouped.mean()
        result[f"{prefix}elapsed_max_ms"] = grouped.max()
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        elapsed = rows["elapsed"].to_numpy()
        for p in PERCENTILES:  # sorted by (t, elapsed): the rank-th value of each second
            rank = starts + (counts * p + 99) // 100 - 1
            result[f"{prefix}elapsed_p{p}_ms"] = np.where(counts > 0, elapsed[np.clip(rank, 0, None)], np.nan)
        ordered = np.sort(elapsed)
        whole.update({f"{prefix}elapsed_mean_ms": elapsed.mean() if len(elapsed) else None,
                      **{f"{prefix}elapsed_p{p}_ms": ordered[(len(ordered) * p + 99) // 100 - 1] if len(ordered)
                         else None for p in PERCENTILES},
                      f"{prefix}elapsed_max_ms": ordered[-1] if len(ordered) else None})
    processing = (ok["Latency"] - ok["Connect"]).groupby(ok["t"])
    result["success_processing_mean_ms"] = processing.mean()
    whole["success_processing_mean_ms"] = (ok["Latency"] - ok["Connect"]).mean() if len(ok) else None
    frame["engine"] = frame["threadName"].str.extract(ENGINE_REGEX, expand=False).fillna("")
    result["threads"] = frame.groupby(["t", "engine"])["allThreads"].max().groupby("t").sum()
    result.reset_index().to_parquet(out)
    _write_whole(out, whole)


PEERS: dict[str, Callable[[Path, Path], None]] = {
    "kubexp collect path": _kubexp_collect, "polars lazy scan": _polars, "duckdb": _duckdb, "pandas": _pandas}


if __name__ == "__main__":
    PEERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
