"""JTL -> per-second aggregates, end to end: kubexp beside polars, duckdb and pandas, in the same run.

The file is built from real JMeter 5.5 rows (benchmarks/data/jmeter-5.5-rows.jtl, captured by
benchmarks/jtl_capture.py from a distributed run: long URLs with query strings, response messages,
engine-prefixed thread names, 404/503/timeout failures). Each generated row copies a real row's text
fields and gets a new timeStamp (default 6,000 req/s over two engines, up to 300 ms out of order),
elapsed, Latency and Connect; about 1 % are copies of the real failed rows.

Every contender runs as its own process, started from the command line and timed until it exits
(interpreter start-up, imports, t0 discovery and the output file included), with its CPU time and peak
RSS from wait4. All compute the same per-second statistics (t0 = the smallest timeStamp; requests,
successes, 4xx/5xx failures, elapsed mean, exact nearest-rank p50/p90/p95/p99 and max of all requests and
of the successful ones, mean processing time Latency - Connect of the successful ones, latency and connect
means, bytes, threads) and the same elapsed figures over the whole file, and each result is checked equal
to kubexp's before a figure is kept.

    .venv/bin/python benchmarks/jtl_ingest.py [--rows 7200000] [--repeat 1] [--jtl FILE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import figures
import jtl_peers
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

TEMPLATES = Path(__file__).parent / "data" / "jmeter-5.5-rows.jtl"
RATE_PER_S = 6000
FAILURE_SHARE = 0.01
PERCENTILES = (50, 90, 95, 99)
DISTRIBUTION = ("elapsed_mean_ms", *(f"elapsed_p{p}_ms" for p in PERCENTILES), "elapsed_max_ms")
STATISTICS = ("t", "requests", "successes", "failures_4xx", "failures_5xx", *DISTRIBUTION, "latency_mean_ms",
              "connect_mean_ms", "bytes", "threads", *(f"success_{name}" for name in DISTRIBUTION),
              "success_processing_mean_ms")
# over the whole file (kubexp.records.EXPERIMENT_LOAD_COLUMNS)
WHOLE = ("requests", "successes", *DISTRIBUTION, *(f"success_{name}" for name in DISTRIBUTION),
         "success_processing_mean_ms")


# -- the file ---------------------------------------------------------------------------------------


def _csv_field(column: pa.Array) -> pa.Array:
    """JMeter's CSV quoting of a text column: quoted (inner quotes doubled) when it holds a comma or quote."""
    text = pc.cast(column, pa.string())
    text = pc.fill_null(text, "")
    needs = pc.or_(pc.match_substring(text, ","), pc.match_substring(text, '"'))
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, text)


def generate(path: Path, rows: int, t0_ms: int = 1_700_000_000_000, seed: int = 5) -> None:
    """Write `rows` samples built from the real template rows, in blocks of 1 M rows (bounded memory)."""
    templates = pacsv.read_csv(TEMPLATES, convert_options=pacsv.ConvertOptions(
        column_types={name: pa.string() for name in ("success", "responseCode", "threadName")}))
    names = templates.column_names
    text = {name: _csv_field(templates[name].combine_chunks()) for name in names}
    failed = np.flatnonzero(templates["success"].to_numpy(zero_copy_only=False) == "false")
    passed = np.flatnonzero(templates["success"].to_numpy(zero_copy_only=False) == "true")
    thread_names = templates["threadName"].to_pylist()
    engines = sorted({name.split("-", 1)[0] for name in thread_names})
    group = thread_names[0].split("-", 1)[1].rsplit("-", 1)[0]  # "workers 1"
    template_elapsed = templates["elapsed"].to_numpy()
    rng = np.random.default_rng(seed)
    block = 1_000_000
    with pa.OSFile(str(path), "wb") as out:
        out.write((",".join(names) + "\n").encode())
        for start in range(0, rows, block):
            n = min(block, rows - start)
            index = np.arange(start, start + n)
            fails = rng.random(n) < FAILURE_SHARE
            pick = np.where(fails, failed[rng.integers(0, len(failed), n)], passed[rng.integers(0, len(passed), n)])
            elapsed = np.minimum(rng.lognormal(3.0, 0.8, n).astype(np.int64), 10_000)
            elapsed = np.where(fails, template_elapsed[pick], elapsed)  # a timeout keeps its real elapsed
            engine = index % len(engines)
            columns = {name: text[name].take(pa.array(pick)) for name in names}
            columns.update({
                "timeStamp": t0_ms + index * 1000 // RATE_PER_S + rng.integers(0, 300, n),
                "elapsed": elapsed, "Latency": np.maximum(elapsed - rng.integers(0, 3, n), 0),
                "Connect": rng.integers(0, 3, n), "grpThreads": np.full(n, 60), "allThreads": np.full(n, 60),
                "threadName": pc.binary_join_element_wise(
                    pa.array(np.array(engines)[engine]), pa.array(np.char.mod(f"-{group}-%d", rng.integers(1, 61, n))),
                    ""),
            })
            out.write(_csv_lines([columns[name] for name in names]))


def _csv_lines(columns: list[pa.Array | np.ndarray]) -> pa.Buffer:
    """Join columns into CSV lines without a per-row Python loop (the strings' data buffer is the text)."""
    texts = [pc.cast(pa.array(column) if isinstance(column, np.ndarray) else column, pa.string())
             for column in columns]
    lines = pc.binary_join_element_wise(*texts, ",")
    lines = pc.binary_join_element_wise(lines, pa.scalar("\n"), "")
    offsets = lines.buffers()[1]
    first, last = np.frombuffer(offsets, dtype=np.int32)[[lines.offset, lines.offset + len(lines)]]
    return lines.buffers()[2][first:last]


PEERS_SCRIPT = Path(__file__).parent / "jtl_peers.py"
CONTENDERS = ("kubexp jtl aggregate", "kubexp collect path", "polars lazy scan", "duckdb", "pandas")
# Runs a script as __main__ and prints its own peak RSS (VmHWM) on exit: ru_maxrss of a child started
# from this (large) process would count the parent's pages it had before exec.
RUNNER = """import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("\\nVmHWM_KIB " + line.split()[1] + "\\n")
atexit.register(peak)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _command(name: str, path: Path, out: Path) -> list[str]:
    if name == "kubexp jtl aggregate":  # the installed console script, as a user runs it (t0 from the file)
        return [sys.executable, "-c", RUNNER, str(Path(sys.executable).parent / "kubexp"), "jtl", "aggregate",
                str(path), "--output", str(out), "--whole", str(jtl_peers.whole_path(out))]
    return [sys.executable, "-c", RUNNER, str(PEERS_SCRIPT), name, str(path), str(out)]


def run(name: str, path: Path, out: Path) -> dict[str, float]:
    """Wall time, CPU time and peak RSS of one contender's process, from start to exit."""
    started = time.perf_counter()
    process = subprocess.Popen(_command(name, path, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    peaks = [line.split()[1] for line in error.splitlines() if line.startswith("VmHWM_KIB ")]
    if process.returncode != 0 or not peaks:
        raise RuntimeError(f"{name} failed ({process.returncode}): {error[-2000:]}")
    return {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": int(peaks[-1]) / 1024}


def load_result(out: Path) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """A contender's per-second statistics (seconds with requests) and its whole-file ones."""
    frame = pd.read_csv(out) if out.suffix == ".csv" else pd.read_parquet(out)
    frame = frame.rename(columns={"second": "t"})
    frame = frame[frame["requests"] > 0] if "requests" in frame else frame
    whole = json.loads(jtl_peers.whole_path(out).read_text())
    return frame[list(STATISTICS)].astype(float).sort_values("t").reset_index(drop=True), whole


def check_same(name: str, got: tuple[pd.DataFrame, dict[str, float | None]],
               expected: tuple[pd.DataFrame, dict[str, float | None]]) -> None:
    """Every statistic of every second and of the whole file equal (floats to 1e-9): the contenders computed the
    same thing."""
    for figure in WHOLE:
        mine, theirs = got[1].get(figure), expected[1][figure]
        same = mine is None and theirs is None or \
            (mine is not None and theirs is not None and bool(np.isclose(mine, theirs, rtol=1e-9)))
        if not same:
            raise AssertionError(f"{name}: whole-file {figure} is {mine}, kubexp has {theirs}")
    seconds, reference = got[0], expected[0]
    if seconds.shape != reference.shape:
        raise AssertionError(f"{name}: {seconds.shape} per-second values instead of {reference.shape}")
    for column in STATISTICS:
        a, b = seconds[column].to_numpy(), reference[column].to_numpy()
        if not np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True):
            row = int(np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True))[0])
            raise AssertionError(f"{name}: {column} at t={reference['t'][row]:.0f} is {a[row]}, kubexp has {b[row]}")


def compare(path: Path, contenders: list[str], repeat: int) -> dict[str, dict[str, float]]:
    """Each contender `repeat` times, interleaved (so a busy spell hits all alike); its median run and range."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="kubexp-jtl-out-") as folder:
        reference = None
        for round_ in range(repeat):
            for name in contenders:
                out = Path(folder) / f"{contenders.index(name)}.{'csv' if name == 'kubexp jtl aggregate' else 'pq'}"
                runs[name].append(run(name, path, out))
                got = load_result(out)
                if reference is None:
                    reference = got
                elif round_ == 0:
                    check_same(name, got, reference)
                out.unlink()
                jtl_peers.whole_path(out).unlink()
    rows = sum(1 for _ in open(path, "rb")) - 1
    summary = {}
    for name, measured in runs.items():
        seconds = sorted(run_["seconds"] for run_ in measured)
        median = sorted(measured, key=lambda run_: run_["seconds"])[len(measured) // 2]
        summary[name] = {**median, "min_s": seconds[0], "max_s": seconds[-1], "rows": rows,
                         "rows_per_s": rows / median["seconds"], "runs": len(measured)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=7_200_000)
    parser.add_argument("--jtl", type=Path, help="use this JTL instead of generating one (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the generated JTL")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (interleaved); the median is kept")
    parser.add_argument("--only", action="append", choices=CONTENDERS,
                        help="run only these contenders (kubexp jtl aggregate is always run)")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list (make bench)")
    args = parser.parse_args()
    contenders = [name for name in CONTENDERS if not args.only or name in args.only or name == CONTENDERS[0]]
    folder = Path(tempfile.mkdtemp(prefix="kubexp-jtl-bench-", dir="/dev/shm"))
    path = args.jtl or folder / "bench.jtl"
    try:
        if not args.jtl:
            started = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows ({path.stat().st_size / 2**20:,.0f} MiB) from {TEMPLATES.name} in "
                  f"{time.perf_counter() - started:.1f} s")
        print(f"load average before: {' '.join(Path('/proc/loadavg').read_text().split()[:3])} on "
              f"{len(os.sched_getaffinity(0))} cores")
        size_mib = path.stat().st_size / 2**20
        results = compare(path, contenders, args.repeat)
    finally:
        if not args.keep and not args.jtl:
            path.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()
    ours = results["kubexp jtl aggregate"]["seconds"]
    for name, result in results.items():
        spread = f" ({result['min_s']:.2f}-{result['max_s']:.2f})" if result["runs"] > 1 else ""
        print(f"{name:22s} {result['seconds']:6.2f} s{spread}  {result['rows_per_s'] / 1e6:5.2f} M rows/s  "
              f"CPU {result['cpu_s']:6.2f} s  peak RSS {result['peak_rss_mib']:6.0f} MiB  "
              f"kubexp/this {ours / result['seconds']:.2f}x time")
    kubexp_figures = {"kubexp jtl aggregate": "`kubexp jtl aggregate`", "kubexp collect path": "collect path"}
    settings = (f"{results[CONTENDERS[0]]['rows']:,} rows ({size_mib:,.0f} MiB) from real JMeter 5.5 rows, t0 "
                f"discovery and start-up included, median of {args.repeat}; CPU s / peak RSS: "
                + ", ".join(f"{name} {result['cpu_s']:.1f} s / {result['peak_rss_mib']:,.0f} MiB"
                            for name, result in results.items()))
    figures.write(args.json, [
        figures.figure(f"JTL -> per-second aggregates, {label}", results[ours_name]["seconds"], "s",
                       peer=peer, peer_value=results[peer]["seconds"], settings=settings)
        for ours_name, label in kubexp_figures.items() if ours_name in results
        for peer in results
        if peer not in kubexp_figures and (ours_name == CONTENDERS[0] or peer == "polars lazy scan")])


if __name__ == "__main__":
    main()
