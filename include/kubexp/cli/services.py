"""`kubexp services up|down|status`."""

from __future__ import annotations

import json

import click

from kubexp.cli import main
from kubexp.processes import ProcessError
from kubexp.services import LocalServices


@main.group()
def services() -> None:
    """Start, stop and inspect the local services (PostgreSQL, Prometheus, Airflow)."""


@services.command()
@click.option("--no-airflow", is_flag=True, help="Start only PostgreSQL and Prometheus.")
def up(no_airflow: bool) -> None:
    """Start the local services (idempotent)."""
    svc = LocalServices.from_env()
    try:
        svc.up(with_airflow=not no_airflow, log=click.echo)
    except ProcessError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"run folder: {svc.root}")


@services.command()
def down() -> None:
    """Stop everything `up` started (by PID)."""
    LocalServices.from_env().down(log=click.echo)


@services.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {service: pid or null}.")
def status(as_json: bool) -> None:
    """Show which local services run."""
    state = LocalServices.from_env().status()
    if as_json:
        click.echo(json.dumps(state))
        return
    for name, pid in state.items():
        click.echo(f"{name:<27} {f'running (pid {pid})' if pid else 'stopped'}")


@services.command()
def info() -> None:
    """Where to look: Airflow UI address and login, database, run folder."""
    svc = LocalServices.from_env()
    click.echo(f"Airflow UI   http://127.0.0.1:{svc.ports.airflow}  (user admin, password in "
               f"{svc.root}/airflow/passwords.json)")
    click.echo(f"Prometheus   http://127.0.0.1:{svc.ports.prometheus}")
    click.echo(f"Results DB   postgresql://kubexp@127.0.0.1:{svc.ports.postgres}/kubexp "
               f"(password in {svc.root}/secrets.json)")
    click.echo(f"Run folder   {svc.root} (logs/, pids/)")
    click.echo("Stop with    make down")
