"""Report speed: `build_report` over a synthetic suite the size of the paper's section 6 data set.

Fills a throwaway PostgreSQL (or --url) through the store's own API with the paper-scaling
design: 8 initial pod counts x 20 worker counts x native/istio = 320 scenarios, 5 repetitions,
every 8th experiment left unfinished, i.e. 1,400 finished experiments of 1,200 seconds
(1.68 M per-second rows), then builds the report and prints how long each stage took.
Goal: the report in under 30 s on a 2-core machine.

    .venv/bin/python benchmarks/report.py [--seconds 1200] [--repetitions 5] [--url URL] [--out DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import figures
from scratch_postgres import database

from kubexp.analysis import synthetic
from kubexp.analysis.report import build_report
from kubexp.store import db, migrations
from kubexp.suite import parse_suite

MATRIX = {"pods": [1, 2, 3, 4, 5, 10, 15, 20], "workers": list(range(6, 121, 6)), "mesh": ["native", "istio"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1200, help="duration of each experiment")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--url", help="use this (empty or already filled) database instead of a throwaway one")
    parser.add_argument("--out", type=Path, help="keep the report here (default: a temp folder, removed)")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON list (make bench)")
    args = parser.parse_args()
    name = "bench-report"
    document = synthetic.suite_document(name, MATRIX, repetitions=args.repetitions, duration_s=args.seconds)
    suite = parse_suite(document, Path(f"{name}.yaml"))
    out = args.out or Path(tempfile.mkdtemp(prefix="kubexp-report-"))
    with database(args.url, "kubexp-bench-report-") as url:
        migrations.upgrade(url)
        with db.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM experiment WHERE suite = %s AND status = 'finished'",
                                  (name,)).fetchone()
            started = time.perf_counter()
            finished = stored[0] if stored and stored[0] else synthetic.populate(conn, suite, unfinished_every=8)
            fill_s = time.perf_counter() - started
            rows = conn.execute("SELECT count(*) FROM load_second l JOIN experiment e ON e.id = l.experiment_id "
                                "WHERE e.suite = %s", (name,)).fetchone()
            print(f"scenarios              {len(suite.scenarios()):>10,}")
            print(f"finished experiments   {finished:>10,}  (of {len(suite.scenarios()) * args.repetitions:,})")
            print(f"per-second rows        {rows[0] if rows else 0:>10,}")
            print(f"filling the store      {fill_s:>10.1f} s  (through the store API; not part of the goal)")
            report = build_report(conn, name, out)
        for stage, seconds in report.timings.items():
            print(f"report {stage:<15} {seconds:>10.1f} s")
        print(f"report.html            {report.path.stat().st_size / 1e6:>10.1f} MB  ({len(report.figures)} figures "
              f"embedded)")
        print(f"peak RSS               {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>10.0f} MB")
        verdict = "met" if report.timings["total"] < 30 else "MISSED"
        print(f"goal: report < 30 s    {verdict}")
        figures.write(args.json, [figures.figure(
            "HTML report of a suite (statistics, figures, provenance)", round(report.timings["total"], 1), "s",
            settings=f"{finished:,} finished experiments x {args.seconds} s ({rows[0] if rows else 0:,} per-second "
                     f"rows), 320 scenarios x {args.repetitions} repetitions; no peer (absolute)")])
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    else:
        print(f"report kept in {report.path}")


if __name__ == "__main__":
    main()
