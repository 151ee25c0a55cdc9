"""JTL ingest speed: kubexp.load.jtl.aggregate against pandas and pyarrow's bare CSV read.

Generates a JMeter CSV result file (default 7.2 M rows: a 20-minute experiment at 6,000 req/s,
two JMeter servers, a few failures and slightly out-of-order rows) on /dev/shm, then runs each
reader in a fresh process and prints rows/s, CPU seconds and peak RSS (VmHWM of that process: unlike
ru_maxrss it is not inherited across fork + exec). On a shared machine, wall-clock rows/s depend on the
other load; `--repeat N` keeps each reader's best run.

    .venv/bin/python benchmarks/jtl_ingest.py [--rows 7200000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

JMETER_COLUMNS = ("timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType",
                  "success", "failureMessage", "bytes", "sentBytes", "grpThreads", "allThreads", "URL", "Latency",
                  "IdleTime", "Connect")
RATE_PER_S = 6000
T0_MS = 1_700_000_000_000


def generate(path: Path, rows: int, seed: int = 5) -> None:
    """Write a realistic JTL in blocks of 1 M rows (bounded memory)."""
    rng = np.random.default_rng(seed)
    block = 1_000_000
    with pa.OSFile(str(path), "wb") as out:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            index = np.arange(start, start + n)
            # Start times in order, plus up to 300 ms of jitter: rows arrive slightly out of order.
            stamp = T0_MS + index * 1000 // RATE_PER_S + rng.integers(0, 300, n)
            elapsed = np.minimum(rng.lognormal(3.0, 0.8, n).astype(np.int64), 10_000)
            kind = rng.random(n)
            timeout = kind < 0.002
            server_error = (kind >= 0.002) & (kind < 0.01)
            code = np.where(timeout, "Non HTTP response code: java.net.SocketTimeoutException",
                            np.where(server_error, "503", "200"))
            message = np.where(timeout, "Non HTTP response message: Read timed out, after 10000 ms",
                               np.where(server_error, "Service Unavailable", "OK"))
            engine = index % 2
            thread = rng.integers(1, 61, n)
            columns = {
                "timeStamp": stamp, "elapsed": elapsed, "label": np.full(n, "request"),
                "responseCode": code, "responseMessage": quoted(message),
                "threadName": np.char.add(np.where(engine == 0, "10.0.0.1:1099-workers 1-", "10.0.0.2:1099-workers 1-"),
                                          thread.astype(str)),
                "dataType": np.full(n, "bin"), "success": np.where(timeout | server_error, "false", "true"),
                "failureMessage": quoted(np.where(timeout, "Read timed out, after 10000 ms", "")),
                "bytes": np.where(timeout, 0, 48_213 + rng.integers(0, 50, n)), "sentBytes": np.full(n, 161),
                "grpThreads": np.full(n, 60), "allThreads": np.full(n, 60),
                "URL": np.full(n, "http://10.0.0.9:80/large.png?left=10&top=10&right=400&bottom=400"),
                "Latency": np.maximum(elapsed - 2, 0), "IdleTime": np.zeros(n, dtype=np.int64),
                "Connect": rng.integers(0, 3, n),
            }
            if start == 0:
                out.write((",".join(JMETER_COLUMNS) + "\n").encode())
            out.write(csv_lines([columns[name] for name in JMETER_COLUMNS]))


def quoted(values: np.ndarray) -> np.ndarray:
    """Quote the values that contain a comma, as JMeter does."""
    return np.where(np.char.find(values, ",") >= 0, np.char.add(np.char.add('"', values), '"'), values)


def csv_lines(columns: list[np.ndarray]) -> pa.Buffer:
    """Join columns into CSV lines without a per-row Python loop (the strings' data buffer is the text)."""
    texts = [pc.cast(pa.array(column), pa.string()) for column in columns]
    lines = pc.binary_join_element_wise(*texts, ",")
    lines = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = lines.buffers()[1]
    first, last = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return lines.buffers()[2][first:last]


def run_ours(path: Path) -> int:
    from kubexp.load.jtl import aggregate

    return aggregate(path, T0_MS).rows


def run_pandas(path: Path) -> int:
    import pandas as pd

    frame = pd.read_csv(path)
    frame["second"] = (frame["timeStamp"] - T0_MS) // 1000
    grouped = frame.groupby("second").agg(
        requests=("elapsed", "size"), successes=("success", "sum"), elapsed_mean_ms=("elapsed", "mean"),
        elapsed_p99_ms=("elapsed", lambda values: values.quantile(0.99)), bytes=("bytes", "sum"))
    assert len(grouped) > 0
    return len(frame)


def run_pyarrow(path: Path) -> int:
    return pacsv.read_csv(path).num_rows


READERS = {"kubexp": run_ours, "pandas read_csv+groupby": run_pandas, "pyarrow read_csv (bare)": run_pyarrow}


def measure(reader: str, path: Path) -> dict[str, float]:
    """Run one reader in a fresh interpreter so its peak RSS is its own."""
    child = subprocess.run([sys.executable, __file__, "--child", reader, str(path)],
                           check=True, capture_output=True, text=True)
    return dict(json.loads(child.stdout))


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(reader: str, path: Path) -> None:
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    rows = READERS[reader](path)
    seconds = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    print(json.dumps({"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "cpu_s": cpu_s,
                      "peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=7_200_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated JTL")
    parser.add_argument("--jtl", type=Path, help="use this JTL instead of generating one (kept)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per reader; the fastest is reported")
    parser.add_argument("--only", choices=sorted(READERS), action="append", help="run only these readers")
    parser.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    folder = Path(tempfile.mkdtemp(prefix="kubexp-jtl-bench-", dir="/dev/shm"))
    path = args.jtl or folder / "bench.jtl"
    if not args.jtl:
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {args.rows:,} rows ({path.stat().st_size / 2**20:,.0f} MiB) in "
              f"{time.perf_counter() - started:.1f} s: {path}")
    print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])} on "
          f"{len(os.sched_getaffinity(0))} cores")
    results = {}
    try:
        for reader in args.only or READERS:
            runs = [measure(reader, path) for _ in range(args.repeat)]
            results[reader] = result = max(runs, key=lambda run: run["rows_per_s"])
            print(f"{reader:26s} {result['rows_per_s'] / 1e6:6.2f} M rows/s  {result['seconds']:6.2f} s  "
                  f"CPU {result['cpu_s']:6.2f} s  peak RSS {result['peak_rss_mib']:7.0f} MiB")
    finally:
        if not args.keep and not args.jtl:
            path.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    if "kubexp" in results:
        ours = results["kubexp"]["rows_per_s"]
        for reader, result in results.items():
            if reader != "kubexp":
                print(f"kubexp / {reader}: {ours / result['rows_per_s']:.2f}x rows/s")


if __name__ == "__main__":
    main()
