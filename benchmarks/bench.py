"""`make bench`: every benchmark in one command, one table of kubexp beside its peer measured in the same run.

Runs each benchmark script in its own process (short settings by default, the full ones with --full),
collects the figures they append to one JSON list (benchmarks/figures.py) and prints one table: figure,
kubexp, peer, the peer's value and the ratio kubexp / peer. Writes the table as Markdown and the figures
as JSON to results/bench-<UTC time>.{md,json} (git-ignored; results/latest.* point at the newest).
`--readme` rewrites README.md's figures table (between its bench markers) from this run.

    .venv/bin/python benchmarks/bench.py [--full] [--only NAME ...] [--readme] [--from results/latest.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = ROOT / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# name -> (script, short arguments, full arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "jtl": ("jtl_ingest.py", ["--rows", "1200000"], ["--rows", "7200000", "--repeat", "3"]),
    "store": ("store_ingest.py", ["--experiments", "200"], []),
    "report": ("report.py", ["--seconds", "300", "--repetitions", "2"], []),
    "ceiling": ("load_ceiling.py", ["--duration", "10"], ["--duration", "30"]),
    "overhead": ("orchestration_overhead.py", ["--runs", "2"], ["--runs", "5"]),
}


def ratio(item: dict[str, Any]) -> str:
    peer = item.get("peer_value")
    if not peer:
        return "-"
    value = item["kubexp"] / peer
    better = value <= 1 if item["better"] == "lower" else value >= 1
    return f"{value:.2f}x ({'kubexp better or equal' if better else 'peer better'})"


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{text} {unit}"


def markdown(items: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| figure | kubexp | peer (same run) | peer | kubexp / peer | settings |",
             "|---|---|---|---|---|---|"]
    for item in items:
        lines.append(f"| {item['figure']} | {number(item['kubexp'], item['unit'])} | {item['peer'] or '-'} | "
                     f"{number(item['peer_value'], item['unit'])} | {ratio(item)} | {item['settings']} |")
    return "\n".join(lines) + "\n"


def console(items: list[dict[str, Any]]) -> str:
    rows = [("figure", "kubexp", "peer", "peer value", "kubexp/peer")]
    rows += [(item["figure"][:70], number(item["kubexp"], item["unit"]), (item["peer"] or "-")[:34],
              number(item["peer_value"], item["unit"]), ratio(item)) for item in items]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def update_readme(table: str) -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} markers around its figures table")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def run_all(full: bool, names: list[str]) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Run the benchmarks; write results/bench-<UTC time>.{md,json} and point results/latest.* at them."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    collected = RESULTS / f"bench-{stamp}.json"
    collected.write_text("[]")
    load_before = os.getloadavg()
    started = time.perf_counter()
    failed = []
    for name in names:
        script, short, long = BENCHMARKS[name]
        command = [sys.executable, str(HERE / script), *(long if full else short), "--json", str(collected)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        began = time.perf_counter()
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - began:.0f} s", flush=True)
    items = json.loads(collected.read_text())
    cores = len(os.sched_getaffinity(0))
    busy = " (above the core count: other work was running)" if load_before[0] > cores else ""
    header = (f"`make bench{' FULL=1' if full else ''}` ({'full' if full else 'short'} mode), "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cores} cores, load average "
              f"{load_before[0]:.1f} at the start{busy}, {time.perf_counter() - started:.0f} s in all.")
    collected.write_text(json.dumps({"header": header, "figures": items, "failed": failed}, indent=1))
    (RESULTS / f"bench-{stamp}.md").write_text(markdown(items, header))
    for suffix in ("md", "json"):
        latest = RESULTS / f"latest.{suffix}"
        latest.unlink(missing_ok=True)
        latest.symlink_to(f"bench-{stamp}.{suffix}")
    print(f"written: {RESULTS / f'bench-{stamp}.md'} and .json")
    return header, items, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full settings (about an hour on 2 cores)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's figures table from this run")
    parser.add_argument("--from", dest="source", type=Path,
                        help="print (and with --readme, write) the table of an earlier run's JSON instead of running")
    args = parser.parse_args()
    if args.source:
        saved = json.loads(args.source.read_text())
        header, items, failed = saved["header"], saved["figures"], saved["failed"]
    else:
        header, items, failed = run_all(args.full, args.only or list(BENCHMARKS))
    table = markdown(items, header)
    print("\n" + header + "\n\n" + console(items))
    if args.readme:
        if failed:
            raise SystemExit(f"not rewriting README.md: {', '.join(failed)} failed")
        update_readme(table)
        print("README.md's figures table rewritten")
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
