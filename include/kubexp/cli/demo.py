"""`kubexp demo`: run the demo suite through the real Airflow scheduler, start to finish.

Assumes `kubexp services up` ran (PostgreSQL, Prometheus, Airflow). Loads the demo suite into the
store, fills every experiment slot of its DAG with a backfill over the REST API (one run per
experiment; failed slots are rerun), waits, and prints where to look.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import click

from kubexp import settings
from kubexp.cli import main
from kubexp.orchestration import progress as progress_page
from kubexp.orchestration import suite_dag
from kubexp.orchestration.airflow_api import AirflowApiError, AirflowClient, AirflowLogin

DEMO_SUITE = "demo"


def load_into_store(suite_name: str) -> tuple[int, int]:
    from kubexp.store import db, migrations, suites

    migrations.upgrade(settings.database_url())
    with db.connect() as conn:
        return suites.sync_suite(conn, suite_dag.find_suite(suite_name))


def run_all_slots(client: AirflowClient, dag_id: str, conf: dict[str, Any] | None = None, echo: Any = click.echo,
                  timeout_s: float = 3600) -> list[dict]:
    """Backfill every slot (missing, and failed ones again); returns the runs of the window."""
    client.wait_for_dag(dag_id, timeout_s=180)
    details = client.dag_details(dag_id)
    start, end = details["start_date"], details["end_date"]
    created = client.create_backfill(dag_id, datetime.fromisoformat(start), datetime.fromisoformat(end),
                                     reprocess="failed", conf=conf)
    if created is None:
        echo(f"every slot of {dag_id} has already run")
    else:
        echo(f"backfill {created['id']}: one run per experiment, one at a time (watch them in the UI)")
        seen: dict[str, str] = {}
        started = time.monotonic()

        def report(_: dict[str, Any]) -> None:
            for run in client.dag_runs(dag_id, logical_date_gte=start, logical_date_lte=end):
                if seen.get(run["dag_run_id"]) != run["state"]:
                    seen[run["dag_run_id"]] = run["state"]
                    echo(f"  [{time.monotonic() - started:5.0f} s] {run['dag_run_id']}: {run['state']}")

        client.wait_for_backfill(created["id"], timeout_s=timeout_s, poll_s=5, progress=report)
        report({})
    return client.dag_runs(dag_id, logical_date_gte=start, logical_date_lte=end)


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def time_breakdown(client: AirflowClient, dag_id: str, runs: list[dict]) -> list[str]:
    """One line per run: its wall time, its four longest tasks and the gaps between its tasks."""
    lines = []
    for run in sorted(runs, key=lambda r: r.get("start_date") or ""):
        tasks = sorted((ti for ti in client.task_instances(dag_id, run["dag_run_id"]) if ti.get("start_date")),
                       key=lambda ti: ti["start_date"])
        gaps = sum(max(0.0, _seconds(a["end_date"], b["start_date"])) for a, b in zip(tasks, tasks[1:], strict=False))
        longest = sorted(tasks, key=lambda ti: -float(ti.get("duration") or 0))[:4]
        lines.append(f"{run['dag_run_id']}: {_seconds(run.get('start_date'), run.get('end_date')):.0f} s ("
                     + ", ".join(f"{ti['task_id']} {float(ti.get('duration') or 0):.1f} s" for ti in longest)
                     + f"; gaps {gaps:.1f} s)")
    return lines


@main.command()
@click.option("--suite", "suite_name", default=DEMO_SUITE, show_default=True, help="Suite to run.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for the runs.")
@click.option("--allow-dirty", is_flag=True, help="Run even with uncommitted changes in the checkout (recorded in "
              "each attempt's provenance); without it, preflight refuses them.")
def demo(suite_name: str, timeout: float, allow_dirty: bool) -> None:
    """Run the demo suite on the local platform through Airflow and print where the results are."""
    from kubexp.store import db, status

    login = AirflowLogin.from_env()
    client = AirflowClient(login)
    try:
        client.token()
    except AirflowApiError as exc:
        raise click.ClickException(f"{exc}\nStart the local services first: `kubexp services up`") from exc
    scenarios_added, experiments_added = load_into_store(suite_name)
    click.echo(f"suite {suite_name}: {scenarios_added} scenarios and {experiments_added} experiments added to "
               f"the store")
    dag_id = suite_dag.dag_id(suite_name)
    try:
        conf = {"overrides": {"allow_dirty": True}} if allow_dirty else None
        runs = run_all_slots(client, dag_id, conf, timeout_s=timeout)
    except AirflowApiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\nwhere the experiments' time went (wall time of each run; its longest tasks; the scheduler's gaps):")
    for line in time_breakdown(client, dag_id, runs):
        click.echo(f"  {line}")
    with db.connect() as conn:
        progress = status.suite_status(conn, suite_name)
    report = progress_page.build_report(suite_name)
    failed = [run["dag_run_id"] for run in runs if run["state"] == "failed"]
    click.echo("")
    click.echo(f"finished experiments  {progress['finished']} of {progress['experiments']}"
               + (f" ({progress['failed_attempts']} failed attempts, reattempted)" if progress["failed_attempts"]
                  else ""))
    if failed:
        click.echo(f"failed runs           {', '.join(failed)}: see the failed task's log in the UI, or the "
                   f"attempts' errors on the suites page; then rerun `kubexp demo` (it reruns failed slots)")
    password_hint = "KUBEXP_AIRFLOW_PASSWORD" if os.environ.get("KUBEXP_AIRFLOW_PASSWORD") else (
        f"{settings.run_dir() / 'airflow' / 'passwords.json'}")
    click.echo(f"Airflow UI            {login.url}/dags/{dag_id}  (user {login.username}, password in "
               f"{password_hint})")
    click.echo(f"suite progress page   {login.url}/kubexp/")
    click.echo(f"report                {report}")
    if progress["finished"] < progress["experiments"]:
        raise SystemExit(1)

