"""The `kubexp` command imports a command's module only when that command runs; every command is listed."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import kubexp.cli
from kubexp.cli import COMMANDS, main


def test_every_registered_command_is_listed_with_its_module() -> None:
    for module in pkgutil.iter_modules(kubexp.cli.__path__):
        if module.name != "__main__":
            importlib.import_module(f"kubexp.cli.{module.name}")
    registered = {name: command.callback.__module__ for name, command in main.commands.items()
                  if command.callback is not None}
    assert registered == {name: f"kubexp.cli.{module}" for name, module in COMMANDS.items()}


def test_one_command_does_not_import_the_others() -> None:
    code = ("import sys; from kubexp.cli import main; main.get_command(None, 'jtl'); "
            "print(sorted(m for m in sys.modules if m.startswith(('kubexp.cli.', 'airflow', 'kubexp.airflow_api'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "['kubexp.cli.jtl']"
