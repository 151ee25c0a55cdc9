"""The `kubexp` command. Each command group lives in its own module below."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="kubexp")
def main() -> None:
    """kubexp: repeatable performance experiments on Kubernetes, driven by Apache Airflow."""


# Command modules register themselves on `main` when imported.
from kubexp.cli import services  # noqa: E402,F401
from kubexp.cli import app  # noqa: E402,F401
from kubexp.cli import render  # noqa: E402,F401
from kubexp.cli import trigger  # noqa: E402,F401
from kubexp.cli import report  # noqa: E402,F401
from kubexp.cli import demo  # noqa: E402,F401
from kubexp.cli import db, suite  # noqa: E402,F401
from kubexp.cli import dimension, jtl  # noqa: E402,F401
