"""SLOs: values per experiment from a real store, the verdict per scenario, and `kubexp verdict`'s outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xmlschema
import yaml
from analysis_data import store_values
from click.testing import CliRunner

from kubexp.analysis import slo
from kubexp.cli import main
from kubexp.store import db, migrations
from kubexp.suite import SuiteError, load_suite, parse_suite

JUNIT_XSD = Path(__file__).with_name("data") / "junit-10.xsd"
SLOS = {
    "throughput": {"figure": "successes_per_s_median", "min": 50},
    "no-oom": {"figure": "oom_kills", "max": 0},
    "memory": {"figure": "series_mean", "query": "memory", "max": 100},
}


def suite_document(name: str, repetitions: int = 6, slos: dict | None = None) -> dict:
    return {"suite": name, "platform": "local", "repetitions": repetitions, "seed": 3,
            "defaults": {"duration_s": 20}, "matrix": {"workers": [2, 4, 8]},
            "metrics": {"default_queries": False, "queries": {"memory": "sum(process_resident_memory_bytes)"}},
            "analysis": {"warmup_s": 2, "cooldown_s": 2}, "slo": SLOS if slos is None else slos}


@pytest.fixture
def stored(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Scenario 0 meets every SLO, scenario 1 misses throughput and no-oom, scenario 2 straddles the bound."""
    migrations.upgrade(database_url)
    path = tmp_path / "slo-suite.yaml"
    path.write_text(yaml.safe_dump(suite_document("slo-suite")))
    with db.connect(database_url) as conn:
        store_values(conn, load_suite(path), {0: [100, 101, 99, 102, 98, 100], 1: [10, 11, 12, 13, 14, 15],
                                              2: [40, 45, 48, 52, 55, 60]},
                     oom_kills={1: [1, 1, 2, 1, 1, 1]},
                     memory={0: [50] * 6, 1: [50] * 6, 2: [50] * 6})
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    return database_url


def outcomes(cases: list[slo.SloCase]) -> dict[tuple[int, str], str]:
    return {(case.scenario_index, case.slo): case.outcome for case in cases}


def test_values_are_stored_per_experiment_and_judged_per_scenario(stored: str) -> None:
    with db.connect(stored) as conn:
        assert slo.verdict(conn, "slo-suite")[0].values == []  # nothing stored before an evaluation
        assert slo.evaluate_suite(conn, "slo-suite") == 18 * 3
        rows = conn.execute("SELECT slo, count(*), min(value), max(value), bool_and(met) FROM slo_value v "
                            "JOIN experiment e ON e.id = v.experiment_id JOIN suite_scenario ss ON "
                            "ss.scenario_id = e.scenario_id AND ss.suite = e.suite WHERE ss.position = 1 "
                            "GROUP BY slo ORDER BY slo").fetchall()
        assert rows == [("memory", 6, 50.0, 50.0, True), ("no-oom", 6, 1.0, 2.0, False),
                        ("throughput", 6, 10.0, 15.0, False)]
        assert slo.evaluate_suite(conn, "slo-suite") == 18 * 3  # again: replaced, not duplicated
        assert conn.execute("SELECT count(*) FROM slo_value").fetchone() == (54,)
        cases = slo.verdict(conn, "slo-suite")
    assert outcomes(cases) == {
        (0, "throughput"): "met", (0, "no-oom"): "met", (0, "memory"): "met",
        (1, "throughput"): "missed", (1, "no-oom"): "missed", (1, "memory"): "met",
        (2, "throughput"): "undecided", (2, "no-oom"): "met", (2, "memory"): "met"}
    straddling = next(c for c in cases if (c.scenario_index, c.slo) == (2, "throughput"))
    assert "straddles" in straddling.judgement.reason and straddling.judgement.interval is not None
    assert (straddling.judgement.interval.low, straddling.judgement.interval.high) == (40.0, 60.0)


def test_too_few_experiments_for_an_interval_are_undecided_whatever_the_values() -> None:
    judged = slo.judge([100.0, 101.0, 102.0], {"figure": "successes_per_s_median", "min": 50}, 0.95)
    assert judged.outcome == "undecided" and "6 values are needed" in judged.reason
    assert slo.judge([100.0] * 6, {"figure": "successes_per_s_median", "min": 50}, 0.95).outcome == "met"
    assert slo.judge([100.0, 101.0, 102.0], {"figure": "successes_per_s_median", "min": 50}, 0.75).outcome == "met"


def test_verdict_command_writes_valid_junit_json_and_markdown_and_exits_1_on_a_miss(stored: str,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["verdict", "slo-suite", "--junit", str(out / "v.xml"), "--json",
                                       str(out / "v.json"), "--markdown", str(out / "v.md")])
    assert result.exit_code == 1, result.output
    assert "verdict slo-suite: 6 met, 2 missed, 1 undecided" in result.output
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    schema.validate(out / "v.xml")  # raises with the first violation
    junit = schema.to_dict(out / "v.xml")
    suite = junit["testsuite"][0]
    assert (suite["@tests"], suite["@failures"], suite["@skipped"]) == ("9", "2", "1")
    failed = [case["@classname"] + " " + case["@name"] for case in suite["testcase"] if "failure" in case]
    assert failed == ["slo-suite.scenario 1 (workers=4) no-oom: oom_kills <= 0",  # the suite file's key order
                      "slo-suite.scenario 1 (workers=4) throughput: successes_per_s_median >= 50"]
    document = json.loads((out / "v.json").read_text())
    assert document["counts"] == {"met": 6, "missed": 2, "undecided": 1}
    assert {(c["scenario_index"], c["slo"]): c["outcome"] for c in document["cases"]}[(1, "throughput")] == "missed"
    markdown = (out / "v.md").read_text()
    assert markdown.startswith("### kubexp verdict slo-suite: 6 met, 2 missed, 1 undecided")
    assert "| missed | scenario 1 (workers=4) | throughput | successes_per_s_median >= 50 | 12.5 | [10, 15] | 6 |" \
        in markdown


def test_verdict_exits_0_when_nothing_is_missed_and_refuses_a_suite_without_slos(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    migrations.upgrade(database_url)
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    met, bare = tmp_path / "met.yaml", tmp_path / "bare.yaml"
    met.write_text(yaml.safe_dump(suite_document("met-suite", slos={"throughput": SLOS["throughput"]})))
    bare.write_text(yaml.safe_dump(suite_document("bare-suite", slos={})))
    with db.connect(database_url) as conn:
        store_values(conn, load_suite(met), {0: [100] * 6, 1: [90] * 6, 2: [80] * 6})
        store_values(conn, load_suite(bare), {0: [100]})
    result = CliRunner().invoke(main, ["verdict", str(met)])
    assert result.exit_code == 0 and "3 met, 0 missed, 0 undecided" in result.output, result.output
    result = CliRunner().invoke(main, ["verdict", "bare-suite"])
    assert result.exit_code == 1 and "suite bare-suite has no `slo` section" in result.output


@pytest.mark.parametrize(("slos", "message"), [
    ({"x": {"figure": "throughput", "min": 1}}, "slo.x.figure: 'throughput' is not one of"),
    ({"x": {"figure": "failure_share"}}, "slo.x: {'figure': 'failure_share'} is not valid under any of"),
    ({"x": {"figure": "oom_kills", "max": 0, "query": "memory"}}, "slo.x.query: only figure series_mean takes"),
    ({"x": {"figure": "series_mean", "query": "cpu", "max": 1}}, "slo.x.query: 'cpu' is not a query this suite "
                                                                 "collects; allowed: memory"),
    ({"x": {"figure": "series_mean", "max": 1}}, "slo.x: figure series_mean needs `query`; allowed: memory"),
    ({"x": {"figure": "failure_share", "min": 0.5, "max": 0.1}}, "slo.x: min 0.5 is above max 0.1"),
    ({"x": {"figure": "failure_share", "max": 0.1, "limit": 3}}, "slo.x: Additional properties are not allowed"),
])
def test_bad_slo_entries_name_the_file_and_key(slos: dict, message: str) -> None:
    with pytest.raises(SuiteError) as caught:
        parse_suite(suite_document("bad", slos=slos), "bad.yaml")
    assert f"bad.yaml: {message}" in str(caught.value)


def test_report_and_suites_page_show_the_verdict(stored: str, tmp_path: Path) -> None:
    from kubexp.analysis.report import build_report
    from kubexp.orchestration import progress

    with db.connect(stored) as conn:
        slo.evaluate_suite(conn, "slo-suite")
        html = build_report(conn, "slo-suite", tmp_path / "report").path.read_text()
        cases = [case.to_json() for case in slo.verdict(conn, "slo-suite")]
    section = html[html.index("<h2>SLOs</h2>"):]
    section = section[:section.index("<h2>", 5)]
    assert "6 met, 2 missed, 1 undecided" in section and section.count('class="flagged"') == 2
    entry = progress.SuiteProgress(name="slo-suite", dag_id="slo-suite", description="", platform="local",
                                   cluster="local", planned=18, matrix_keys=["workers"], slo_cases=cases,
                                   status={"finished": 18, "experiments": 18, "unfinished": 0, "abandoned": 0,
                                           "running": 0, "failed_attempts": 0, "per_scenario": []})
    page = progress.render_page([entry])
    assert "SLOs: 6 met, 2 missed, 1 undecided" in page and page.count("style=color:#b00020") == 2
    assert progress.SuiteProgress.to_json(entry)["slo"][0]["outcome"] == "met"
