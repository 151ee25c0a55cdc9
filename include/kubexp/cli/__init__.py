"""The `kubexp` command. Each command group lives in its own module below."""

from __future__ import annotations

import importlib
from typing import Any

import click

from kubexp.settings import SettingsError


# Command name -> the module that defines it (each registers itself on `main` when imported). A command's
# module is imported only when that command runs: `kubexp jtl aggregate` does not load Airflow's client.
COMMANDS = {"services": "services", "app": "app", "render": "render", "trigger": "trigger", "backfill": "trigger",
            "report": "report", "demo": "demo", "db": "db", "suite": "suite", "dimension": "dimension", "jtl": "jtl",
            "cluster": "cluster",
            "load": "load", "verdict": "verdict", "compare": "verdict"}


class _Main(click.Group):
    """Settings from the environment that cannot be used are a one-line error, in every command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            importlib.import_module(f"kubexp.cli.{COMMANDS[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Main)
@click.version_option(package_name="kubexp")
def main() -> None:
    """kubexp: repeatable performance experiments on Kubernetes, driven by Apache Airflow."""
