"""The HTML report and `kubexp report`, built from a database with stored experiments.

`report_source` (tests/analysis/conftest.py) is the stored suite these tests read; the
expectations come from the store itself, so a fixture of real local experiments can replace
the synthetic one without changing the tests.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from analysis_data import StoredSuite, store_synthetic_suite
from click.testing import CliRunner
from figure_checks import REPORT_FIGURES

from kubexp.analysis import loaders
from kubexp.analysis.dataset import load_suite_data
from kubexp.analysis.report import build_report
from kubexp.cli import main
from kubexp.local_services import Postgres
from kubexp.store import db


@dataclass(frozen=True)
class Built:
    out: Path
    html: str
    figures: set[str]
    experiments: pd.DataFrame
    parameters: list[str]
    events: int


@pytest.fixture(scope="module")
def built(report_source: StoredSuite, tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("report")
    with db.connect(report_source.url) as conn:
        report = build_report(conn, report_source.suite.name, out)
        data = load_suite_data(conn, report_source.suite.name)
    assert report.path == out / "report.html"
    assert set(report.timings) == {"load", "statistics", "figures", "html", "total"}
    return Built(out, report.path.read_text(), {f.name for f in report.figures}, data.experiments, data.parameters,
                 len(data.events))


def test_figures_are_written_and_embedded(built: Built, png_check: Callable[[Path], tuple[int, int]]) -> None:
    assert REPORT_FIGURES <= built.figures <= REPORT_FIGURES | {"timeline-2"}
    assert ("timeline-2" in built.figures) == (built.events > 0)
    for name in built.figures:
        path = built.out / "figures" / f"{name}.png"
        png_check(path)
        embedded = base64.b64encode(path.read_bytes()).decode()
        assert f"data:image/png;base64,{embedded}" in built.html
    assert "<img" in built.html and 'src="http' not in built.html and "<script" not in built.html  # self-contained


def test_report_sections_match_the_store(built: Built) -> None:
    html = built.html
    for heading in ("Summary", "Figures", "Statistics (Table 1 style)", "Repetitions", "Data completeness",
                    "Provenance", "Unfinished experiments"):
        assert f"<h2>{heading}" in html
    finished = int((built.experiments["status"] == "finished").sum())
    assert f"{finished} / {len(built.experiments)}" in html
    unfinished = re.search(r"Unfinished experiments \((\d+)\)", html)
    assert unfinished and int(unfinished.group(1)) == len(built.experiments) - finished
    for error in built.experiments.loc[built.experiments["status"] != "finished", "last_error"].dropna():
        assert str(error)[:40] in html
    combinations = built.experiments.drop_duplicates(built.parameters)
    for factor in built.parameters:
        section = html.split(f"<h3>Does {factor} change successful responses/s?</h3>")[1].split("</table>")[0]
        others = [p for p in built.parameters if p != factor]
        rows = len(combinations.drop_duplicates(others)) if others else 0
        long_form = section.split("</table>")[0]
        assert long_form.count("<tr") == 1 + rows + 1  # header, one per combination of the others, pooled
        assert section.count('<tr class="pooled') == 1
        assert re.search(r"<td>\d+: [\d.]+ \[[\d.]+, [\d.]+\] \([\d.]+%\)</td>", section)  # n: median [CI] (cov)
    assert "scenarios pinned" in html
    assert "seconds as the unit (paper&#x27;s variant" in html


def test_summary_json_holds_the_reports_numbers_and_no_raw_data(built: Built, report_source: StoredSuite) -> None:
    summary = json.loads((built.out / "summary.json").read_text())
    finished = built.experiments[built.experiments["status"] == "finished"]
    assert summary["suite"] == report_source.suite.name and summary["parameters"] == built.parameters
    assert summary["finished_experiments"] == len(finished)
    assert sum(row["finished"] for row in summary["repetitions"]) == len(finished)
    assert sum(row["experiments"] for row in summary["seconds"]) == len(finished)
    for row in summary["seconds"]:
        assert row["q1"] <= row["median"] <= row["q3"] and row["seconds"] >= row["zero_seconds"]
    assert set(summary["comparisons"]) == set(built.parameters)
    for factor, rows in summary["comparisons"].items():
        others = [p for p in built.parameters if p != factor]
        assert all(rows[-1][p] == "(pooled)" for p in others)
        assert all("p_experiments" in row and "pairs" not in row for row in rows)
    assert sum(row["count"] for row in summary["events"]) == built.events
    with db.connect(report_source.url) as conn:
        names = {str(n) for n in loaders.metric_points(conn, report_source.suite.name)["name"].unique()}
    assert names and {row["name"] for row in summary["series"]} == names
    assert all(row["seconds"] > 0 and row["mean"] is not None for row in summary["series"])
    assert (built.out / "summary.json").stat().st_size < 200_000


def test_synthetic_report_details(synthetic_report_suite: StoredSuite, report_source: StoredSuite, built: Built,
                                  tmp_path: Path) -> None:
    """What the synthetic source is known to hold: MSER windows, tiny groups, provenance, a metric."""
    if report_source is synthetic_report_suite:
        html = built.html
    else:
        with db.connect(synthetic_report_suite.url) as conn:
            html = build_report(conn, synthetic_report_suite.suite.name, tmp_path).path.read_text()
    assert "synthetic &lt;b&gt;data&lt;/b&gt; &amp; not a measurement" in html  # escaped
    assert "warm-up detected per experiment by MSER-5" in html
    etcd = html.split("<h3>Does etcd_storage change")[1].split("</table>")[0]
    assert "too few experiments per group" in etcd  # scenarios with 2 of 3 finished
    assert "generator" in html and "kubexp.analysis.synthetic" in html  # provenance facts
    assert "replicas" in html and "threshold 95%" in html  # metric completeness


def test_cli_writes_the_report(report_source: StoredSuite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", report_source.url)
    result = CliRunner().invoke(main, ["report", str(report_source.suite.path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    assert f"report: {tmp_path / 'r' / 'report.html'}" in result.output
    missing = CliRunner().invoke(main, ["report", "no-such-suite", "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0
    assert "'no-such-suite' is not in the store" in missing.output


def test_report_of_a_suite_without_finished_experiments(postgres_server: Postgres, tmp_path: Path) -> None:
    stored = store_synthetic_suite(postgres_server, tmp_path, "analysis-empty", {"workers": [5, 10]},
                                   repetitions=1, duration_s=30, unfinished_every=1)
    assert stored.finished == 0
    with db.connect(stored.url) as conn:
        report = build_report(conn, "analysis-empty", tmp_path / "out")
        assert len(loaders.experiments(conn, "analysis-empty")) == 2
    html = report.path.read_text()
    assert report.figures == []
    assert "No finished experiments with load data yet." in html
    assert "Unfinished experiments (2)" in html and "0 / 2" in html


def test_report_of_a_single_scenario_suite(postgres_server: Postgres, tmp_path: Path,
                                           png_check: Callable[[Path], tuple[int, int]]) -> None:
    stored = store_synthetic_suite(postgres_server, tmp_path, "analysis-single", {"workers": [8]},
                                   repetitions=3, duration_s=90, analysis={"warmup_s": 5, "cooldown_s": 2})
    with db.connect(stored.url) as conn:
        report = build_report(conn, "analysis-single", tmp_path / "out")
    html = report.path.read_text()
    assert "The suite varies no parameter" in html
    assert "warm-up 5 s (suite analysis.warmup_s)" in html
    assert "3 / 3" in html and "Unfinished experiments (0)" in html
    for figure in report.figures:
        png_check(figure.path)


def test_load_generator_section_flags_saturated_attempts() -> None:
    import pandas as pd

    from kubexp.analysis import report_html
    from kubexp.load.saturation import assess

    calm = assess(master_cpu_s=4.0, wall_s=20.0, servers=["127.0.0.1:1"], server_cpu_s={"127.0.0.1:1": 6.0},
                  samples=500, duration_s=10, intended_rate_per_s=None, cores=2)
    busy = assess(master_cpu_s=3.0, wall_s=20.0, servers=[], server_cpu_s={}, samples=800, duration_s=10,
                  intended_rate_per_s=100, cores=2)
    attempts = pd.DataFrame([
        {"experiment_id": "aaaaaaaa-1", "repetition": 1, "counted": True, "workers": 2,
         "facts": {"load": {"generator": calm}}},
        {"experiment_id": "bbbbbbbb-2", "repetition": 2, "counted": False, "workers": 4,
         "facts": {"load": {"generator": busy}}},
        {"experiment_id": "cccccccc-3", "repetition": 1, "counted": False, "workers": 4, "facts": {}},
    ])
    html = report_html.generator(attempts, ["workers"])
    assert "<b>1</b> of 2 flagged" in html
    assert "master 10%, 127.0.0.1:1 15%" in html and "80 of 100" in html
    assert html.count('class="flagged"') == 1 and "80.0 arrivals/s sent of 100 intended" in html
    assert report_html.generator(attempts.iloc[2:], ["workers"]).endswith("recorded its generator's CPU use.</p>")


def test_demo_suite_report_shows_no_95_percent_interval_at_two_repetitions(postgres_server: Postgres,
                                                                          tmp_path: Path) -> None:
    """The shipped demo suite (2 scenarios x 2 repetitions): a 95 % interval of a median needs 6 values; the
    report says so with the real coverage of the range of 2 (50 %) instead of printing one."""
    from kubexp.analysis import synthetic
    from kubexp.settings import SUITES_DIR
    from kubexp.store import migrations
    from kubexp.suite import load_suite

    postgres_server.create_databases("a_demo_report")
    url = postgres_server.url("a_demo_report")
    migrations.upgrade(url)
    suite = load_suite(SUITES_DIR / "demo.yaml")
    with db.connect(url) as conn:
        assert synthetic.populate(conn, suite, seed=3) == 4
        report = build_report(conn, "demo", tmp_path / "out")
    html = report.path.read_text()
    statistics = html.split("<h2>Statistics")[1].split("<h2>")[0]
    assert statistics.count("(no 95% interval at n = 2)") == 2  # workers = 4 and 8, in the row of the table
    assert re.search(r"\[[\d.]+, [\d.]+\] \([\d.]+%\)", statistics) is None  # no interval anywhere
    repetitions = html.split("<h2>Repetitions")[1].split("<h2>")[0]
    assert repetitions.count("none (see verdict)") == 2
    assert repetitions.count("no 95% interval: n = 2, and even the full range covers the median only 50.0% of "
                             "the time; 6 values are needed") == 2


def test_report_draws_the_chosen_experiments_as_timelines(report_source: StoredSuite, tmp_path: Path) -> None:
    with db.connect(report_source.url) as conn:
        data = load_suite_data(conn, report_source.suite.name)
        wanted = sorted(data.per_experiment["experiment_id"])[-1]
        report = build_report(conn, report_source.suite.name, tmp_path / "out", experiments=[wanted])
        with pytest.raises(ValueError, match="no-such-experiment are not finished experiments"):
            build_report(conn, report_source.suite.name, tmp_path / "bad", experiments=["no-such-experiment"])
    timelines = [f for f in report.figures if f.name.startswith("timeline-")]
    assert [f.name for f in timelines] == ["timeline-1"] and f"experiment {wanted} (" in timelines[0].question
