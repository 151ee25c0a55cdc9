"""The `kubexp` command. Each command group lives in its own module below."""

from __future__ import annotations

import click


@click.group()
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
