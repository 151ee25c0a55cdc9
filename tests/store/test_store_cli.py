"""`kubexp db upgrade` and `kubexp suite validate|load|status` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubexp.cli import main
from kubexp.settings import SUITES_DIR
from kubexp.suite import load_suite


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # A SQLAlchemy-style URL, as Airflow connections give it, must work too.
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url.replace("postgresql://", "postgresql+psycopg2://"))
    return CliRunner()


def test_upgrade_load_and_status(cli: CliRunner, tmp_path: Path) -> None:
    first = cli.invoke(main, ["db", "upgrade"])
    assert first.exit_code == 0 and "applied 0001_experiment_store" in first.output
    assert "up to date" in cli.invoke(main, ["db", "upgrade"]).output
    demo = str(SUITES_DIR / "demo.yaml")
    loaded = cli.invoke(main, ["suite", "load", demo])
    assert loaded.exit_code == 0 and "2 scenarios and 4 experiments added" in loaded.output
    assert "0 scenarios and 0 experiments added" in cli.invoke(main, ["suite", "load", demo]).output
    more = yaml.safe_load(Path(demo).read_text()) | {"repetitions": 3}
    grown = tmp_path / "demo.yaml"
    grown.write_text(yaml.safe_dump(more))
    assert "0 scenarios and 2 experiments added" in cli.invoke(main, ["suite", "load", str(grown)]).output
    state = json.loads(cli.invoke(main, ["suite", "status", "demo", "--json"]).output)
    assert (state["scenarios"], state["experiments"], state["finished"], state["unfinished"]) == (2, 6, 0, 6)
    assert len(state["per_scenario"]) == 2
    text = cli.invoke(main, ["suite", "status", "demo"]).output
    assert "0/6 experiments finished" in text and '{"workers": 4}' in text


def test_validate_reports_problems_with_exit_code_1(cli: CliRunner, tmp_path: Path) -> None:
    ok = cli.invoke(main, ["suite", "validate", str(SUITES_DIR / "paper-scaling.yaml")])
    assert ok.exit_code == 0 and "320 scenarios x 5 repetitions = 1600 experiments" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: bad\nplatform: local\nrepetitions: 1\nmatrix: {pods: [2], pods_max: [1]}\n")
    result = cli.invoke(main, ["suite", "validate", str(bad)])
    assert result.exit_code == 1 and "pods_max=1 is below pods=2" in result.output and str(bad) in result.output
    for platform, section, expected in (
        ("kubernetes", "kubernetes: {namepsace: x}",
         "kubernetes: unknown key(s) namepsace; allowed: app_server, app_threads"),
        ("local", "local: {app_threads: 0}", "section local: app_threads must be > 0"),
    ):  # sections the platform checks key by key: validate runs those checks too
        bad.write_text(f"suite: bad\nplatform: {platform}\nrepetitions: 1\nmatrix: {{pods: [1]}}\n{section}\n")
        result = cli.invoke(main, ["suite", "validate", str(bad)])
        assert result.exit_code == 1 and expected in result.output and str(bad) in result.output
    bad.write_text("suite: bad\nplatform: local\nrepetitions: 1\nmatrix: {pods: [2], pods_max: [2, 4]}\n")
    scaling = next(s for s in load_suite(bad).scenarios() if s.params["pods_max"] == 4)
    result = cli.invoke(main, ["suite", "validate", str(bad)])  # autoscaling: refused before any experiment runs
    assert result.exit_code == 1 and f"{bad}: scenario {scaling.index} ({scaling.id}): platform local: " \
        f"pods_max=4 > pods=2 needs autoscaling" in result.output
    empty = cli.invoke(main, ["suite", "status", "nothing"])
    assert empty.exit_code == 1 and "run `kubexp db upgrade`" in empty.output
    cli.invoke(main, ["db", "upgrade"])
    unknown = cli.invoke(main, ["suite", "status", "nothing"])
    assert unknown.exit_code == 1 and "kubexp suite load" in unknown.output


def test_unusable_settings_are_one_line_errors_in_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEXP_DATABASE_URL", raising=False)
    monkeypatch.setenv("KUBEXP_POSTGRES_PORT", "abc")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "KUBEXP_POSTGRES_PORT='abc' is not a port number" in result.output
