"""The `kubexp` command. Each command group lives in its own module below."""

from __future__ import annotations

from typing import Any

import click

from kubexp.settings import SettingsError


class _Main(click.Group):
    """Settings from the environment that cannot be used are a one-line error, in every command."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Main)
@click.version_option(package_name="kubexp")
def main() -> None:
    """kubexp: repeatable performance experiments on Kubernetes, driven by Apache Airflow."""


# Command modules register themselves on `main` when imported.
from kubexp.cli import services
from kubexp.cli import app
from kubexp.cli import render
from kubexp.cli import trigger
from kubexp.cli import report
from kubexp.cli import demo
from kubexp.cli import db, suite
from kubexp.cli import dimension, jtl
