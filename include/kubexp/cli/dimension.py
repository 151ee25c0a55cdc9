"""`kubexp dimension`: the paper's load model (section 4) for one scenario."""

from __future__ import annotations

import dataclasses
import json

import click

from kubexp.cli import main
from kubexp.queueing import ModelError, dimension


@main.command("dimension")
@click.option("--workers", "-L", type=click.IntRange(min=0), required=True, help="Closed-loop workers L.")
@click.option("--think-time-ms", type=click.FloatRange(min=0), required=True, help="Mean think time t_delay.")
@click.option("--response-time-ms", type=click.FloatRange(min=0), required=True,
              help="Response time t_resp (for capacity: the unloaded one; with 0 and --pods give --pod-rate-per-s).")
@click.option("--pods", type=click.IntRange(min=1), default=None, help="Pods J: adds capacity, rho and MVA.")
@click.option("--timeout-ms", type=click.FloatRange(min=0), default=None,
              help="The load generator's timeout t_time-out (default or 0: none).")
@click.option("--pod-rate-per-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Measured responses/s of one pod, instead of 1000 / response time.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (key request_rate: eq. 5).")
def dimension_command(workers: int, think_time_ms: float, response_time_ms: float, pods: int | None,
                      timeout_ms: float | None, pod_rate_per_s: float | None, as_json: bool) -> None:
    """Offered request rate (equation 5) and, with --pods, the throughput plateau, rho and saturating workers."""
    try:
        result = dimension(workers, think_time_ms, response_time_ms, pods=pods, timeout_ms=timeout_ms,
                           pod_rate_per_s=pod_rate_per_s)
    except ModelError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
        return
    click.echo(f"offered request rate (eq. 5): {result.request_rate:.1f} req/s "
               f"({workers} workers x {result.worker_rate:.2f} req/s)")
    if result.capacity is not None:
        click.echo(f"capacity of {pods} pods (throughput plateau): {result.capacity:.1f} responses/s; "
                   f"utilisation rho = {result.utilisation:.2f}")
        click.echo(f"smallest worker count that saturates the pods (rho >= 1): {result.saturating_workers}")
        if result.predicted_response_time_ms is not None:
            click.echo(f"MVA at {workers} workers: throughput {result.predicted_throughput:.1f} responses/s, "
                       f"response time {result.predicted_response_time_ms:.1f} ms")
