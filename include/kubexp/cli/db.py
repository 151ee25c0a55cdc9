"""`kubexp db upgrade`: apply the results schema (sql/) to the results database."""

from __future__ import annotations

import click

from kubexp import settings
from kubexp.cli import main
from kubexp.store import db, migrations


@main.group(name="db")
def db_group() -> None:
    """The results database (KUBEXP_DATABASE_URL, else the one `kubexp services up` started)."""


@db_group.command()
def upgrade() -> None:
    """Apply the schema migrations and views that have not run yet (idempotent)."""
    try:
        applied = migrations.upgrade(settings.database_url())
    except db.StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if not applied:
        click.echo("results schema is up to date")
    for name in applied:
        click.echo(f"applied {name}")
