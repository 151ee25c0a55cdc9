"""The `kubexp` command imports a command's module only when that command runs; every command is listed."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import click

import kubexp.cli
from kubexp.cli import COMMANDS, main


def _import_every_command() -> None:
    for module in pkgutil.iter_modules(kubexp.cli.__path__):
        if module.name != "__main__":
            importlib.import_module(f"kubexp.cli.{module.name}")


def test_every_registered_command_is_listed_with_its_module() -> None:
    _import_every_command()
    registered = {name: command.callback.__module__ for name, command in main.commands.items()
                  if command.callback is not None}
    assert registered == {name: f"kubexp.cli.{module}" for name, (module, _summary) in COMMANDS.items()}


def test_help_lists_the_commands_as_click_would_from_their_own_help() -> None:
    _import_every_command()
    for width in (40, 60, 80, 100, 140, 220):
        ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
        main.format_commands(click.Context(main), ours)
        click.Group.format_commands(main, click.Context(main), clicks)
        assert ours.getvalue() == clicks.getvalue()


def _modules_after(*args: str) -> list[str]:
    """The modules `kubexp ARGS` imported, in a fresh interpreter."""
    code = ("import atexit, sys; atexit.register(lambda: print(*sorted(sys.modules), file=sys.stderr)); "
            f"from kubexp.cli import main; main({list(args)!r}, prog_name='kubexp')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stderr.split()


def test_help_imports_no_command() -> None:
    assert [name for name in _modules_after("--help") if name.startswith("kubexp.cli.")] == []


def test_jtl_aggregate_imports_neither_pandas_nor_airflow_nor_other_commands(tmp_path: Path) -> None:
    path = tmp_path / "run.jtl"
    path.write_text("timeStamp,elapsed,success,responseCode,threadName,allThreads\n"
                    "1700000000000,5,true,200,workers 1-1,1\n1700000001200,7,false,503,workers 1-2,2\n")
    unwanted = ("airflow", "psycopg", "requests", "jsonschema", "kubexp.orchestration", "kubexp.store")
    loaded = _modules_after("jtl", "aggregate", str(path), "--output", str(tmp_path / "out.csv"))
    assert [name for name in loaded if name.startswith(("pandas", *unwanted))] == []
    assert [name for name in loaded if name.startswith("kubexp.cli.")] == ["kubexp.cli.jtl"]
    with path.open("a") as handle:  # an unparsable value: the tolerant second pass (pyarrow may load pandas there)
        handle.write("1700000001300,x,true,200,workers 1-1,2\n")
    loaded = _modules_after("jtl", "aggregate", str(path), "--output", str(tmp_path / "out.csv"),
                            "--max-malformed-share", "0.5")
    assert [name for name in loaded if name.startswith(unwanted)] == []


def test_one_command_does_not_import_the_others() -> None:
    code = ("import sys; from kubexp.cli import main; main.get_command(None, 'jtl'); "
            "print(sorted(m for m in sys.modules if m.startswith(('kubexp.cli.', 'airflow', 'kubexp.orchestration'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert loaded.strip() == "['kubexp.cli.jtl']"


def test_demo_prints_where_each_runs_time_went() -> None:
    from kubexp.cli.demo import time_breakdown

    class Client:  # the two REST answers time_breakdown reads, as Airflow's API v2 shapes them
        def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
            assert (dag_id, run_id) == ("demo", "slot-1")
            return [
                {"task_id": "load", "start_date": "2026-01-01T00:00:10+00:00", "end_date": "2026-01-01T00:00:40+00:00",
                 "duration": 30.0},
                {"task_id": "select", "start_date": "2026-01-01T00:00:00+00:00",
                 "end_date": "2026-01-01T00:00:02+00:00", "duration": 2.0},
                {"task_id": "collect", "start_date": "2026-01-01T00:00:41.5+00:00",
                 "end_date": "2026-01-01T00:00:45+00:00", "duration": 3.5},
                {"task_id": "skipped", "start_date": None, "end_date": None, "duration": None},
            ]

    runs = [{"dag_run_id": "slot-1", "start_date": "2026-01-01T00:00:00+00:00",
             "end_date": "2026-01-01T00:00:46+00:00"}]
    # gaps: select ends at 2, load starts at 10 (8 s); load ends at 40, collect starts at 41.5 (1.5 s)
    assert time_breakdown(Client(), "demo", runs) == [  # type: ignore[arg-type]
        "slot-1: 46 s (load 30.0 s, collect 3.5 s, select 2.0 s; gaps 9.5 s)"]  # a task that never ran is left out
