"""`kubexp suite validate|load|status`: check a suite file, put it into the store, follow its progress."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from kubexp import platform as platforms
from kubexp import settings
from kubexp.cli import main
from kubexp.preflight import settings_problems
from kubexp.store import db, migrations, status, suites
from kubexp.suite import Suite, SuiteError, load_suite

_FILE = click.Path(dir_okay=False, path_type=Path)


@main.group(name="suite")
def suite_group() -> None:
    """Suite files (include/suites/*.yaml): parameter matrix, repetitions, collection settings."""


def _load(path: Path) -> Suite:
    try:
        return load_suite(path)
    except SuiteError as exc:
        raise click.ClickException(str(exc)) from exc


@suite_group.command()
@click.argument("file", type=_FILE)
def validate(file: Path) -> None:
    """Check FILE against the suite schema and its sections' settings; exit 1 with the problems if it is invalid."""
    suite = _load(file)
    problems = settings_problems(suite)
    if problems:
        raise click.ClickException("\n".join(problems))
    scenarios = len(suite.scenarios())
    click.echo(f"{file}: suite {suite.name} is valid: {scenarios} scenarios x {suite.repetitions} repetitions = "
               f"{scenarios * suite.repetitions} experiments on {suite.platform} cluster {suite.cluster}")


@suite_group.command()
@click.argument("file", type=_FILE)
def load(file: Path) -> None:
    """Create FILE's scenarios and missing experiments in the store (idempotent; upgrades the schema first)."""
    suite = _load(file)
    try:
        url = settings.database_url()
        for name in migrations.upgrade(url):
            click.echo(f"applied {name}")
        with db.connect(url) as conn:
            scenarios_added, experiments_added = suites.sync_suite(conn, suite)
            state = status.suite_status(conn, suite.name, lease_key=platforms.lease_key(suite))
    except db.StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"suite {suite.name}: {scenarios_added} scenarios and {experiments_added} experiments added; "
               f"now {state['scenarios']} scenarios, {state['experiments']} experiments, {state['finished']} finished")


@suite_group.command(name="status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys: scenarios, experiments, ...).")
def status_command(name: str, as_json: bool) -> None:
    """Progress of suite NAME: scenarios, experiments, finished, unfinished, failed attempts, per scenario."""
    try:
        with db.connect() as conn:
            state = status.suite_status(conn, name)
            with contextlib.suppress(SuiteError):  # the lease is on the target the suite file names
                state["lock"] = status.lease(conn, platforms.lease_key(load_suite(state["path"])))
    except db.StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(state, default=str))
        return
    click.echo(f"suite {state['suite']} on cluster {state['cluster']}: {state['finished']}/{state['experiments']} "
               f"experiments finished, {state['unfinished']} unfinished ({state['running']} running), "
               f"{state['abandoned']} abandoned (max_attempts reached), {state['failed_attempts']} failed attempts "
               f"({state['abandoned_attempts']} reclaimed without a heartbeat)")
    if state["chain"]:
        click.echo(_chain_line(state["chain"]))
    lock = state["lock"]
    if lock:
        click.echo(f"cluster lease: {lock['holder']} until {lock['expires_at']}" + (" (expired)" if lock["expired"]
                                                                                      else ""))
    click.echo(f"{'#':>4}  {'scenario':<16}  {'done':>4}/{'all':<4} {'run':>3} {'fail':>4} {'aband':>5}  parameters")
    varied_keys = _varied(state)
    for row in state["per_scenario"]:
        varied = {key: row["params"][key] for key in sorted(row["params"]) if key in varied_keys}
        click.echo(f"{row['index']:>4}  {row['scenario_id']:<16}  {row['finished']:>4}/{row['experiments']:<4} "
                   f"{row['running']:>3} {row['failed_attempts']:>4} {row['abandoned']:>5}  {json.dumps(varied)}")


def _chain_line(chain: dict) -> str:
    """The newest chain of runs until done: running or why it stopped, and its runs so far."""
    runs = f"{chain['runs']} runs ended so far ({chain['failed_runs']} failed)"
    if chain["running"]:
        head = f"until_done chain {chain['id']}: running, now run {chain['current_run_id']}; {runs}"
    else:
        head = (f"until_done chain {chain['id']}: stopped at {chain['stopped_at']} ({chain['stop_reason']}: "
                f"{chain['stop']}); {runs}")
    return head + (f"\n  latest note: {chain['note']}" if chain["note"] else "")


def _varied(state: dict) -> set[str]:
    """Parameters whose value differs between the suite's scenarios (the ones worth printing)."""
    values: dict[str, set[str]] = {}
    for row in state["per_scenario"]:
        for key, value in row["params"].items():
            values.setdefault(key, set()).add(json.dumps(value))
    return {key for key, seen in values.items() if len(seen) > 1}
