"""The JTL benchmark's contenders other than the `kubexp` command, one per process (see jtl_ingest.py).

    python benchmarks/jtl_peers.py NAME JTL OUT    # writes the per-second statistics to OUT (Parquet)

Each imports only what it uses, inside its function: start-up is part of what is measured.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

PERCENTILES = (50, 90, 95, 99)
READ = ("timeStamp", "elapsed", "success", "responseCode", "bytes", "allThreads", "Latency", "Connect", "threadName")
ENGINE_REGEX = r"^(\S+:\d+)-"



def _kubexp_collect(path: Path, out: Path) -> None:
    """What an experiment does: the load step aggregates from the smallest timeStamp and keeps the result
    beside the JTL (t0 and the end come from it); collect's aggregate from that t0 reads it back."""
    from kubexp.load.jtl import aggregate, aggregate_and_keep, kept_path

    try:
        loaded = aggregate_and_keep(path)
        aggregate(path, loaded.t0_ms).frame.to_parquet(out)
    finally:
        kept_path(path).unlink(missing_ok=True)


def _polars(path: Path, out: Path) -> None:
    import polars as pl

    types = {name: pl.Int64 for name in ("timeStamp", "elapsed", "bytes", "allThreads", "Latency", "Connect")}
    samples = pl.scan_csv(path, schema_overrides={**types, "success": pl.Boolean, "responseCode": pl.String,
                                                  "threadName": pl.String}).select(READ)
    t0 = samples.select(pl.col("timeStamp").min()).collect().item()
    timed = samples.with_columns(t=(pl.col("timeStamp") - t0) // 1000)
    failed, code = ~pl.col("success"), pl.col("responseCode")
    count = pl.len().cast(pl.Int64)
    per_second = timed.group_by("t").agg(
        requests=count, successes=pl.col("success").sum(),
        failures_4xx=(failed & code.str.contains(r"^4\d\d$")).sum(),
        failures_5xx=(failed & code.str.contains(r"^5\d\d$")).sum(),
        elapsed_mean_ms=pl.col("elapsed").mean(),
        **{f"elapsed_p{p}_ms": pl.col("elapsed").sort().get((count * p + 99) // 100 - 1) for p in PERCENTILES},
        elapsed_max_ms=pl.col("elapsed").max(), latency_mean_ms=pl.col("Latency").mean(),
        connect_mean_ms=pl.col("Connect").mean(), bytes=pl.col("bytes").sum())
    threads = (timed.with_columns(engine=pl.col("threadName").str.extract(ENGINE_REGEX, 1).fill_null(""))
               .group_by("t", "engine").agg(pl.col("allThreads").max())
               .group_by("t").agg(threads=pl.col("allThreads").sum()))
    pl.collect_all([per_second.join(threads, on="t").sort("t")], engine="streaming")[0].write_parquet(out)


DUCKDB_SQL = f"""
WITH samples AS (SELECT {', '.join(READ)} FROM read_csv(?, header = true, auto_detect = true)),
first AS (SELECT min(timeStamp) AS t0 FROM samples),
timed AS (SELECT (timeStamp - t0) // 1000 AS t, * FROM samples, first),
per_second AS (
  SELECT t, count(*) AS requests, count(*) FILTER (success) AS successes,
         count(*) FILTER (NOT success AND regexp_full_match(responseCode, '4[0-9][0-9]')) AS failures_4xx,
         count(*) FILTER (NOT success AND regexp_full_match(responseCode, '5[0-9][0-9]')) AS failures_5xx,
         avg(elapsed) AS elapsed_mean_ms,
         {', '.join(f"list_sort(list(elapsed))[(count(*) * {p} + 99) // 100] AS elapsed_p{p}_ms" for p in PERCENTILES)},
         max(elapsed) AS elapsed_max_ms, avg(Latency) AS latency_mean_ms, avg(Connect) AS connect_mean_ms,
         sum(bytes) AS bytes
  FROM timed GROUP BY t),
engines AS (SELECT t, max(allThreads) AS peak FROM timed GROUP BY t, regexp_extract(threadName, '{ENGINE_REGEX}', 1))
SELECT per_second.*, threads FROM per_second JOIN (SELECT t, sum(peak) AS threads FROM engines GROUP BY t) USING (t)
ORDER BY t
"""


def _duckdb(path: Path, out: Path) -> None:
    import duckdb

    with duckdb.connect() as con:
        con.execute(f"SET threads = {len(os.sched_getaffinity(0))}")
        con.execute(DUCKDB_SQL, [str(path)]).df().to_parquet(out)


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
    grouped = frame.groupby("t")
    result = grouped.agg(requests=("elapsed", "size"), successes=("success", "sum"), failures_4xx=("f4", "sum"),
                         failures_5xx=("f5", "sum"), elapsed_mean_ms=("elapsed", "mean"),
                         elapsed_max_ms=("elapsed", "max"), latency_mean_ms=("Latency", "mean"),
                         connect_mean_ms=("Connect", "mean"), bytes=("bytes", "sum"))
    starts = np.concatenate(([0], np.cumsum(result["requests"].to_numpy())[:-1]))
    elapsed = frame["elapsed"].to_numpy()
    for p in PERCENTILES:  # sorted by (t, elapsed): the rank-th value of each second
        result[f"elapsed_p{p}_ms"] = elapsed[starts + (result["requests"].to_numpy() * p + 99) // 100 - 1]
    frame["engine"] = frame["threadName"].str.extract(ENGINE_REGEX, expand=False).fillna("")
    result["threads"] = frame.groupby(["t", "engine"])["allThreads"].max().groupby("t").sum()
    result.reset_index().to_parquet(out)


PEERS: dict[str, Callable[[Path, Path], None]] = {
    "kubexp collect path": _kubexp_collect, "polars lazy scan": _polars, "duckdb": _duckdb, "pandas": _pandas}


if __name__ == "__main__":
    PEERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
