"""The HTML report and `kubexp report`, built from a database with stored experiments."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import StoredSuite, store_synthetic_suite

from kubexp.analysis.report import build_report
from kubexp.cli import main
from kubexp.services import Postgres
from kubexp.store import db

FIGURES = {"throughput-vs-workers", "throughput-vs-pods", "std-per-scenario", "densities", "timeline-1",
           "timeline-2"}


@pytest.fixture(scope="module")
def built(report_source: StoredSuite, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    with db.connect(report_source.url) as conn:
        report = build_report(conn, report_source.suite.name, out)
    assert report.path == out / "report.html"
    assert {f.name for f in report.figures} == FIGURES
    assert set(report.timings) == {"load", "statistics", "figures", "html", "total"}
    return out, report.path.read_text()


def test_figures_are_written_and_embedded(built: tuple[Path, str],
                                          png_check: Callable[[Path], tuple[int, int]]) -> None:
    out, html = built
    for name in FIGURES:
        path = out / "figures" / f"{name}.png"
        png_check(path)
        embedded = base64.b64encode(path.read_bytes()).decode()
        assert f"data:image/png;base64,{embedded}" in html
    assert "<img" in html and 'src="http' not in html and "<script" not in html  # self-contained


def test_report_sections(built: tuple[Path, str], report_source: StoredSuite) -> None:
    _, html = built
    for heading in ("Summary", "Figures", "Statistics (Table 1 style)", "Repetitions", "Data completeness",
                    "Provenance", "Unfinished experiments"):
        assert f"<h2>{heading}" in html
    assert "synthetic &lt;b&gt;data&lt;/b&gt; &amp; not a measurement" in html  # escaped
    assert "warm-up detected per experiment by MSER-5" in html
    for factor in ("pods", "workers", "mesh", "etcd_storage"):
        section = html.split(f"<h3>Does {factor} change successful responses/s?</h3>")[1].split("</table>")[0]
        assert section.count("<tr") == 1 + 8 + 1  # header, 8 combinations of the other three, pooled
        assert section.count('<tr class="pooled') == 1
    etcd = html.split("<h3>Does etcd_storage change")[1].split("</table>")[0]
    assert "too few experiments per group" in etcd  # scenarios with 2 of 3 finished
    assert re.search(r"<td>3: [\d.]+ \[[\d.]+, [\d.]+\]</td>", etcd)  # n: median [CI]
    assert "seconds as the unit (paper&#x27;s variant" in html or "seconds as the unit (paper's variant" in html
    finished = report_source.finished
    assert f"{finished} / 48" in html
    assert "load servers unreachable" in html
    unfinished = re.search(r"Unfinished experiments \((\d+)\)", html)
    assert unfinished and int(unfinished.group(1)) == 48 - finished
    assert "generator" in html and "kubexp.analysis.synthetic" in html  # provenance facts
    assert "replicas" in html and "threshold 95%" in html  # metric completeness
    assert "scenarios pinned" in html


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
    html = report.path.read_text()
    assert report.figures == []
    assert "No finished experiments with load data yet." in html
    assert "Unfinished experiments (2)" in html and "0 / 2" in html
