"""`kubexp services up|down|status|info`."""

from __future__ import annotations

import json

import click

from kubexp import settings
from kubexp.cli import main
from kubexp.local_services import LocalServices
from kubexp.processes import ProcessError


def _services() -> LocalServices:
    try:
        return LocalServices.from_env()
    except settings.SettingsError as exc:  # a bad KUBEXP_*_PORT: one line naming the variable
        raise click.ClickException(str(exc)) from None


@main.group()
def services() -> None:
    """Start, stop and inspect the local services (PostgreSQL, Prometheus, Airflow)."""


@services.command()
@click.option("--no-airflow", is_flag=True, help="Start only PostgreSQL and Prometheus.")
def up(no_airflow: bool) -> None:
    """Start the local services (idempotent)."""
    svc = _services()
    try:
        svc.up(with_airflow=not no_airflow, log=click.echo)
    except ProcessError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run folder: {svc.root}")


@services.command()
def down() -> None:
    """Stop Airflow, every local-platform and JMeter process recorded under the run folder, then
    Prometheus and PostgreSQL (each by its PID file)."""
    svc = _services()
    if not svc.down(log=click.echo):
        click.echo(f"nothing was running (run folder {svc.root})")


@services.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {service: pid or null}.")
def status(as_json: bool) -> None:
    """Show which local services run (reads PID files only)."""
    state = _services().status()
    if as_json:
        click.echo(json.dumps(state))
        return
    for name, pid in state.items():
        click.echo(f"{name:<27} {f'running (pid {pid})' if pid else 'stopped'}")


@services.command()
def info() -> None:
    """Where to look: Airflow UI address and login, database, run folder."""
    svc = _services()
    click.echo(f"Airflow UI   http://127.0.0.1:{svc.ports.airflow}  (user admin, password in "
               f"{svc.root}/airflow/passwords.json)")
    click.echo(f"Prometheus   http://127.0.0.1:{svc.ports.prometheus}")
    click.echo(f"Results DB   postgresql://kubexp@127.0.0.1:{svc.ports.postgres}/kubexp "
               f"(password in {svc.root}/secrets.json)")
    click.echo(f"Run folder   {svc.root} (logs/, pids/)")
    click.echo("Stop with    make down")
