"""The kubexp suites page: per-scenario counts and the latest failures from the store, as the plugin serves it."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from kubexp import experiment
from kubexp.orchestration import progress
from kubexp.settings import REPO_ROOT, SUITES_DIR


@pytest.fixture
def suites(tmp_path: Path, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    monkeypatch.setenv("KUBEXP_SUITES_DIR", str(tmp_path))
    shutil.copy(SUITES_DIR / "demo.yaml", tmp_path / "demo.yaml")
    (tmp_path / "broken.yaml").write_text("suite: broken\n")
    return tmp_path


def test_page_shows_counts_failures_and_broken_files(suites: Path) -> None:
    never_run = progress.render_page(progress.all_suites())
    assert "Not run yet" in never_run and "build report" not in never_run

    current = experiment.select(suites / "demo.yaml", experiment.RunRef("demo", "manual__1<x>", 1), {})
    assert current is not None
    experiment.fail(current.to_xcom(), "load: JMeter <exited> with code 1")
    entries = {entry.name: entry for entry in progress.all_suites()}
    demo = entries["demo"]
    assert demo.status is not None and demo.status["failed_attempts"] == 1 and demo.status["unfinished"] == 4
    assert demo.recent_failures[0]["error"] == "load: JMeter <exited> with code 1"
    assert "required keys" in (entries["broken"].error or "")

    page = progress.render_page(list(entries.values()))
    assert "<b>0</b> of 4 finished, 4 unfinished (0 running), 0 abandoned (max_attempts reached), 1 failed " \
           "attempts" in page
    assert "load: JMeter &lt;exited&gt; with code 1" in page and "manual__1&lt;x&gt;" in page  # escaped
    assert "href='../dags/demo' target=_top" in page and "action='reports/demo'" in page  # relative links
    assert page.count("<tr><td>") == 2  # one row per scenario


def test_report_paths_stay_inside_the_reports_folder(kubexp_home: Path) -> None:
    folder = progress.reports_dir() / "demo"
    folder.mkdir(parents=True)
    (folder / "report.html").write_text("<html></html>")
    assert progress.report_path("demo") == folder / "report.html"
    assert progress.report_path("../demo") is None and progress.report_path("missing") is None


def test_plugin_registers_page_and_menu_entry() -> None:
    spec = importlib.util.spec_from_file_location("kubexp_suites_page", REPO_ROOT / "plugins" / "kubexp_suites_page.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.KubexpSuitesPlugin
    [app] = plugin.fastapi_apps
    [view] = plugin.external_views
    assert app["url_prefix"] == "/kubexp" and view["href"] == "kubexp/" and view["destination"] == "nav"
    routes = {route.path for route in app["app"].routes}
    assert {"/", "/api/suites", "/reports/{suite_name}"} <= routes
