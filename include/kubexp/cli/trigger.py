"""`kubexp trigger SUITE` and `kubexp backfill SUITE`: start suite DAG runs over Airflow's REST API v2.

URL and login: KUBEXP_AIRFLOW_URL, KUBEXP_AIRFLOW_USER, KUBEXP_AIRFLOW_PASSWORD (default: the local
services of `kubexp services up`).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kubexp.cli import main
from kubexp.orchestration import suite_dag
from kubexp.orchestration.airflow_api import AirflowApiError, AirflowClient, default_run_id, slot_window
from kubexp.store import chains
from kubexp.suite import SuiteError, load_suite

REPROCESS = {"missing": "none", "failed": "failed"}


def suite_dag_id(suite: str) -> str:
    """A suite name, or the path of a suite file, to its DAG id."""
    if suite.endswith((".yaml", ".yml")) or "/" in suite:
        try:
            return suite_dag.dag_id(load_suite(Path(suite)).name)
        except SuiteError as exc:
            raise click.ClickException(str(exc)) from exc
    return suite_dag.dag_id(suite)


def _parse_conf(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--conf") from exc
    if not isinstance(conf, dict):
        raise click.BadParameter('give a JSON object, e.g. \'{"dry_run": true}\'', param_hint="--conf")
    return conf


_SPAN = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def _deadline(text: str) -> str:
    """--deadline as an absolute UTC time: a span from now (90m, 12h, 3d) or an ISO 8601 date and time."""
    span = _SPAN.match(text.strip())
    if span:
        moment = datetime.now(UTC) + timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise click.BadParameter(f"{text!r}: give a span from now (90m, 12h, 3d) or an ISO 8601 date and time "
                                     f"(2026-12-24T18:00:00Z)", param_hint="--deadline") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _client() -> AirflowClient:
    return AirflowClient.from_env()


@main.command()
@click.argument("suite")
@click.option("--conf", help='Run parameters as JSON, e.g. \'{"scenario": "<id>", "dry_run": true}\'.')
@click.option("--run-id", help="Run id (default: from the CI job id, else a timestamp). Reusing an id "
              "returns the existing run instead of starting another, so retried CI jobs are idempotent.")
@click.option("--wait/--no-wait", default=False, help="Wait until the run ends; exit 1 if it failed. With "
              "--until-done: until the chain stops; exit 1 unless the suite is complete.")
@click.option("--timeout", default=7200.0, show_default=True, help="Seconds to wait with --wait.")
@click.option("--until-done", is_flag=True, help="Each run starts the next at its end, one at a time, until the "
              "suite is complete or the chain stops (reason in each run's note and `kubexp suite status`).")
@click.option("--max-failed-runs", type=click.IntRange(min=1), help="With --until-done: stop after this many "
              "failed runs in a row (default 3).")
@click.option("--deadline", help="With --until-done: start no run after this time: a span from now (90m, 12h, "
              "3d) or an ISO 8601 date and time.")
def trigger(suite: str, conf: str | None, run_id: str | None, wait: bool, timeout: float, until_done: bool,
            max_failed_runs: int | None, deadline: str | None) -> None:
    """Start one run (= one experiment) of SUITE's DAG; with --until-done, a chain of runs until the suite is done."""
    dag_id = suite_dag_id(suite)
    params = _parse_conf(conf)
    if (max_failed_runs is not None or deadline is not None) and not until_done:
        raise click.UsageError("--max-failed-runs and --deadline bound a chain of runs: add --until-done")
    if until_done:
        params["until_done"] = True
        if max_failed_runs is not None:
            params["max_failed_runs"] = max_failed_runs
        if deadline is not None:
            params["deadline"] = _deadline(deadline)
    client = _client()
    try:
        client.wait_for_dag(dag_id)
        run, created = client.trigger(dag_id, run_id or default_run_id(), params)
        click.echo(f"{'triggered' if created else 'already exists:'} {dag_id} run {run['dag_run_id']} "
                   f"({run['state']})")
        if wait and until_done:
            _wait_for_chain(client, dag_id, run["dag_run_id"], timeout)
            return
        if wait:
            run = client.wait_for_run(dag_id, run["dag_run_id"], timeout_s=timeout)
            click.echo(f"run {run['dag_run_id']} ended: {run['state']}")
    except AirflowApiError as exc:
        raise click.ClickException(str(exc)) from exc
    if wait and run["state"] != "success":
        raise SystemExit(1)


def _wait_for_chain(client: AirflowClient, dag_id: str, first_run_id: str, timeout: float) -> None:
    """Follow a chain of runs until done, run by run (each started by the previous one's until_done_next),
    printing each run's note; exit 1 unless the chain stopped because the suite is complete."""
    deadline = time.monotonic() + timeout
    run_id, number, note = first_run_id, 1, ""
    while True:
        run = client.wait_for_run(dag_id, run_id, timeout_s=max(1.0, deadline - time.monotonic()))
        note = run.get("note") or ""
        click.echo(f"run {run_id} ended: {run['state']}" + (f"; {note}" if note else ""))
        number += 1
        following = chains.next_run_id(first_run_id, number)
        try:
            client.dag_run(dag_id, following)
        except AirflowApiError as exc:
            if exc.status != 404:
                raise
            break
        run_id = following
    if chains.STOP_REASONS["complete"] not in note:
        raise SystemExit(1)


@main.command()
@click.argument("suite")
@click.option("--reprocess", type=click.Choice(sorted(REPROCESS)), default="missing", show_default=True,
              help="missing: fill slots that never ran; failed: also rerun slots whose run failed.")
@click.option("--from-slot", type=int, default=1, show_default=True, help="First slot (1-based).")
@click.option("--to-slot", type=int, help="Last slot (default: the suite's last, one slot per experiment).")
@click.option("--conf", help="Run parameters (JSON) for every backfilled run.")
@click.option("--wait/--no-wait", default=False, help="Wait until the backfill is done; exit 1 if a run failed.")
@click.option("--timeout", default=86400.0, show_default=True, help="Seconds to wait with --wait.")
def backfill(suite: str, reprocess: str, from_slot: int, to_slot: int | None, conf: str | None, wait: bool,
             timeout: float) -> None:
    """Fill SUITE's experiment slots with Airflow's backfill (one run per slot, one at a time)."""
    dag_id = suite_dag_id(suite)
    client = _client()
    try:
        client.wait_for_dag(dag_id)
        details = client.dag_details(dag_id)
        start = datetime.fromisoformat(details["start_date"])
        end = datetime.fromisoformat(details["end_date"])
        last = to_slot or suite_dag.slot_of(end)
        first_date, last_date = slot_window(start, from_slot, last)
        if last_date > end:
            raise click.BadParameter(f"the suite has {suite_dag.slot_of(end)} slots", param_hint="--to-slot")
        created = client.create_backfill(dag_id, first_date, last_date, reprocess=REPROCESS[reprocess],
                                         conf=_parse_conf(conf))
        if created is None:
            click.echo(f"nothing to backfill: every slot {from_slot}..{last} of {dag_id} has a run"
                       + (" (use --reprocess failed to rerun failed ones)" if reprocess == "missing" else ""))
            return
        click.echo(f"backfill {created['id']} of {dag_id}: slots {from_slot}..{last} "
                   f"({first_date:%Y-%m-%d}..{last_date:%Y-%m-%d}), reprocess {reprocess}")
        if not wait:
            return
        done = client.wait_for_backfill(created["id"], timeout_s=timeout)
        runs = client.backfill_runs(done)
        ran = {run["dag_run_id"] for run in runs}
        left = [run for run in client.slot_runs(done) if run["dag_run_id"] not in ran and run["state"] == "failed"]
    except AirflowApiError as exc:
        raise click.ClickException(str(exc)) from exc
    failed = [run for run in runs if run["state"] != "success"]
    for run in runs:
        slot = suite_dag.slot_of(datetime.fromisoformat(run["logical_date"]))
        click.echo(f"  slot {slot:>4}  {run['dag_run_id']}  {run['state']}")
    for run in left:
        slot = suite_dag.slot_of(datetime.fromisoformat(run["logical_date"]))
        click.echo(f"  slot {slot:>4}  {run['dag_run_id']}  failed earlier, not rerun (use --reprocess failed)")
    if failed:
        raise SystemExit(1)
