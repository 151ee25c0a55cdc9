"""`kubexp jtl aggregate FILE`: a JMeter CSV result file as one row per second."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kubexp.cli import main
from kubexp.load.jtl import MAX_MALFORMED_SHARE, JtlError, aggregate


@main.group()
def jtl() -> None:
    """JMeter result files (JTL, CSV format)."""


@jtl.command("aggregate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--start-ms", type=int, default=None,
              help="t0 in epoch milliseconds; a sample belongs to second floor((timeStamp - t0) / 1000). "
                   "Default: the smallest timeStamp in the file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to write (default: standard output).")
@click.option("--max-malformed-share", type=click.FloatRange(0, 1), default=MAX_MALFORMED_SHARE, show_default=True,
              help="Refuse the file when more than this share of its lines is malformed.")
@click.option("--columns", default=None,
              help="Comma-separated column names, in file order, for a file without a header row that is not "
                   "in JMeter's default 17-column layout.")
@click.option("--whole", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the exact statistics over every sample (nearest-rank percentiles of all and of the "
                   "successful requests) to this JSON file.")
def aggregate_command(file: Path, start_ms: int | None, output: Path | None, max_malformed_share: float,
                      columns: str | None, whole: Path | None) -> None:
    """Per-second requests, failures by class, elapsed mean/percentiles of all and of successful requests,
    processing time, latency, bytes and threads.

    The CSV's `second` column is t: whole seconds from t0.
    """
    try:
        result = aggregate(file, start_ms, max_malformed_share=max_malformed_share,
                           columns=columns.split(",") if columns else None)
    except JtlError as exc:
        raise click.ClickException(str(exc)) from exc
    text = result.seconds.csv({"t": "second"})
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    if whole is not None:
        whole.write_text(json.dumps(result.whole, indent=1) + "\n")
    click.echo(f"{result.rows} samples in {len(result.seconds)} seconds from t0_ms={result.t0_ms}; "
               f"{result.malformed} malformed lines skipped", err=True)
