"""Runs until done without a scheduler: the reattempt rule, the attempt bound, the chain's record and how
`kubexp suite status`, the suites page and the report show them (the real DAG runs it in tests/e2e)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from kubexp import experiment
from kubexp import platform as platforms
from kubexp.cli import main
from kubexp.orchestration import progress
from kubexp.store import chains, db, selection
from kubexp.suite import SUITES_DIR, load_suite

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _decide(**changes: object) -> chains.Decision:
    args: dict = {"chain_id": "c1", "number": 2, "failed": False, "failed_in_a_row": 0, "max_failed_runs": 3,
                  "needs_fix": None, "progress": chains.Progress(experiments=4, finished=1, abandoned=1),
                  "deadline": None, "now": NOW, "paused": False}
    return chains.decide(**{**args, **changes})


def test_the_rule_goes_on_while_experiments_are_left_and_says_why_it_stops() -> None:
    going = _decide()
    assert (going.decision, going.next_run_id) == ("next", "c1__until_done_3")
    assert going.note == ("until_done chain c1, run 2: this run succeeded; 1 of 4 finished, 1 abandoned, 2 left. "
                          "Next run: c1__until_done_3.")
    assert _decide(progress=chains.Progress(4, 4, 0)).decision == "complete"
    assert _decide(progress=chains.Progress(4, 3, 1)).decision == "max_attempts"
    # complete wins over everything else; then an error that needs a fix, then the bounds, then pausing
    assert _decide(progress=chains.Progress(4, 4, 0), needs_fix="PreflightError: x", paused=True).decision == \
        "complete"
    stopped = _decide(failed=True, failed_in_a_row=3, needs_fix="PreflightError: uncommitted changes", paused=True)
    assert stopped.decision == "needs_fix" and stopped.next_run_id is None
    assert stopped.note.endswith("Chain stopped: an error that needs a fix, not another run: PreflightError: "
                                 "uncommitted changes.")
    assert _decide(failed=True, failed_in_a_row=3).decision == "max_failed_runs"
    assert _decide(failed=True, failed_in_a_row=2).decision == "next"
    assert _decide(deadline=NOW).decision == "deadline" and _decide(deadline=NOW + timedelta(seconds=1)).decision == \
        "next"
    assert _decide(paused=True).decision == "paused"


@pytest.fixture
def suite_file(tmp_path: Path, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo suite (2 scenarios) with one repetition and max_attempts 2, on a fresh store."""
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    monkeypatch.setenv("KUBEXP_SUITES_DIR", str(tmp_path))
    document = yaml.safe_load((SUITES_DIR / "demo.yaml").read_text())
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump({**document, "repetitions": 1, "max_attempts": 2}))
    return path


def _run(path: Path, run_id: str, params: dict, *, fail: str | None) -> chains.Decision:
    """One run of a chain as the DAG does it: select, (fail), the lease released, then the until_done branch."""
    run = experiment.RunRef("demo", run_id, 1)
    current = experiment.select(path, run, params)
    if current is not None and fail:
        experiment.fail(current.to_xcom(), fail)
    with db.connect() as conn:
        selection.release_cluster(conn, platforms.lease_key(load_suite(path)), run.holder)
    decided = experiment.until_done(path, run, params, failed=bool(fail), needs_fix=None, paused=False)
    assert decided is not None
    decision, conf = decided
    assert conf["chain"] == params.get("chain", run_id) and conf["until_done"] is True and "scenario" not in conf
    return decision


def test_a_scenario_that_always_fails_is_abandoned_and_the_chain_stops_at_its_bound(suite_file: Path,
                                                                                   database_url: str) -> None:
    params = {"until_done": True, "max_failed_runs": 10, "scenario": None}
    decisions = [_run(suite_file, "c1", params, fail="load: JMeter exited with code 1")]
    while decisions[-1].decision == "next":
        assert len(decisions) < 10, decisions
        run_id = decisions[-1].next_run_id
        assert run_id is not None
        decisions.append(_run(suite_file, run_id, {**params, "chain": "c1"}, fail="load: JMeter exited with code 1"))
    # 2 experiments x max_attempts 2: four failed runs, the last one finds nothing left to run
    assert [d.decision for d in decisions] == ["next", "next", "next", "max_attempts"]
    assert [d.number for d in decisions] == [1, 2, 3, 4]
    assert "Chain stopped: nothing left to run" in decisions[-1].note
    with psycopg.connect(database_url) as conn:
        statuses = conn.execute("SELECT e.status, count(a.id), bool_and(a.error LIKE 'load: JMeter%%') "
                                "FROM experiment e JOIN attempt a ON a.experiment_id = e.id "
                                "GROUP BY e.id, e.status").fetchall()
        assert statuses == [("abandoned", 2, True), ("abandoned", 2, True)]
        chain = chains.latest(conn, "demo")
        assert chain is not None and not chain["running"] and chain["stop_reason"] == "max_attempts"
        assert (chain["runs"], chain["failed_runs"]) == (4, 4)
        # a retried branch takes the decision its run took the first time
        again = experiment.until_done(suite_file, experiment.RunRef("demo", "c1", 1), params, failed=False,
                                      needs_fix="PreflightError: x", paused=True)
        assert again is not None and again[0] == decisions[0]
        # an abandoned experiment cannot be forced, and no run selects it
        [(experiment_id,)] = conn.execute("SELECT id::text FROM experiment LIMIT 1").fetchall()
    with pytest.raises(experiment.ExperimentError, match="abandoned: its failed attempts reached max_attempts"):
        experiment.select(suite_file, experiment.RunRef("demo", "forced", 1), {"experiment": experiment_id})
    assert experiment.select(suite_file, experiment.RunRef("demo", "plain", 1), {}) is None
    with db.connect() as conn:
        selection.release_cluster(conn, platforms.lease_key(load_suite(suite_file)), "demo/plain")

    # `kubexp suite status` and the suites page show the abandoned experiments and why the chain stopped
    shown = CliRunner().invoke(main, ["suite", "status", "demo"])
    assert shown.exit_code == 0, shown.output
    assert "0/2 experiments finished, 0 unfinished (0 running), 2 abandoned (max_attempts reached)" in shown.output
    assert "until_done chain c1: stopped at" in shown.output and "(max_attempts: nothing left to run" in shown.output
    assert "4 runs ended so far (4 failed)" in shown.output
    state = json.loads(CliRunner().invoke(main, ["suite", "status", "demo", "--json"]).output)
    assert state["abandoned"] == 2 and state["chain"]["stop_reason"] == "max_attempts"
    page = progress.render_page(progress.all_suites())
    assert "Until done chain <code>c1</code>: <b>stopped</b>" in page and "<code>max_attempts</code>" in page

    # the report lists the abandoned experiments with their attempts' errors
    from kubexp.analysis.report import build_report

    with psycopg.connect(database_url) as conn:
        report = build_report(conn, "demo", suite_file.parent / "report").path.read_text()
    assert "Abandoned experiments (2)" in report and report.count("load: JMeter exited with code 1") >= 4

    # raising max_attempts in the suite file makes them unfinished again
    suite_file.write_text(suite_file.read_text().replace("max_attempts: 2", "max_attempts: 3"))
    assert load_suite(suite_file).max_attempts == 3
    assert experiment.select(suite_file, experiment.RunRef("demo", "after-raise", 1), {}) is not None


def test_a_chain_stops_after_failed_runs_in_a_row_and_shows_while_running(suite_file: Path,
                                                                         database_url: str) -> None:
    params = {"until_done": True, "max_failed_runs": 2}
    first = _run(suite_file, "c2", params, fail="collect: Prometheus did not answer")
    assert first.decision == "next"
    with psycopg.connect(database_url) as conn:
        chain = chains.latest(conn, "demo")
    assert chain is not None and chain["running"] and chain["current_run_id"] == "c2__until_done_2"
    shown = CliRunner().invoke(main, ["suite", "status", "demo"])
    assert "until_done chain c2: running, now run c2__until_done_2; 1 runs ended so far (1 failed)" in shown.output
    second = _run(suite_file, "c2__until_done_2", {**params, "chain": "c2"}, fail="collect: Prometheus did not answer")
    assert second.decision == "max_failed_runs" and "2 in a row" in second.note


def test_a_dry_run_or_a_run_without_until_done_starts_no_chain(suite_file: Path, database_url: str) -> None:
    from kubexp.store import migrations

    migrations.upgrade(database_url)
    assert experiment.until_done(suite_file, experiment.RunRef("demo", "d", 1), {"dry_run": True, "until_done": True},
                                 failed=False, needs_fix=None, paused=False) is None
    assert experiment.until_done(suite_file, experiment.RunRef("demo", "d", 1), {}, failed=False, needs_fix=None,
                                 paused=False) is None
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM run_chain").fetchone() == (0,)
    with pytest.raises(experiment.ExperimentError, match="not an ISO 8601 date"):
        experiment.select(suite_file, experiment.RunRef("demo", "bad", 1), {"until_done": True, "deadline": "soon"})


def test_trigger_cli_refuses_bounds_without_until_done_and_reads_deadlines() -> None:
    from kubexp.cli.trigger import _deadline

    refused = CliRunner().invoke(main, ["trigger", "demo", "--max-failed-runs", "2"])
    assert refused.exit_code == 2 and "add --until-done" in refused.output
    assert _deadline("2026-12-24T18:00:00+01:00") == "2026-12-24T17:00:00Z"
    in_12h = datetime.fromisoformat(_deadline("12h"))
    assert abs((in_12h - datetime.now(UTC)) - timedelta(hours=12)) < timedelta(minutes=1)
    bad = CliRunner().invoke(main, ["trigger", "demo", "--until-done", "--deadline", "soon"])
    assert bad.exit_code == 2 and "span from now (90m, 12h, 3d)" in bad.output


def test_claiming_respects_the_bound(suite_file: Path, database_url: str) -> None:
    suite = load_suite(suite_file)
    with psycopg.connect(database_url, autocommit=True) as conn:
        experiment.select(suite_file, experiment.RunRef("demo", "x", 1), {})  # loads the suite
        conn.execute("UPDATE suite SET max_attempts = 1")
        [(experiment_id,)] = conn.execute("SELECT experiment_id::text FROM attempt").fetchall()
        conn.execute("UPDATE attempt SET outcome = 'failed', ended_at = now(), error = 'x'")
        conn.execute("UPDATE experiment SET claimed_by = NULL, claimed_at = NULL")
        from kubexp.store import attempts

        assert attempts.apply_attempt_bound(conn, suite="demo") == [(experiment_id, "abandoned")]
        with pytest.raises(selection.SelectionError, match="abandoned"):
            selection.claim_experiment(conn, suite, "h", scenario_id=None, experiment_id=experiment_id,
                                       stale_after_s=60)


def test_a_lease_left_by_a_killed_lease_sensor_is_released_only_for_its_run(suite_file: Path,
                                                                             database_url: str) -> None:
    from kubexp.store import migrations

    migrations.upgrade(database_url)
    assert experiment.lock_cluster(suite_file, "demo", "killed")
    assert not experiment.release_unused_lease(suite_file, "demo", "other")  # not its lease: kept
    assert experiment.release_unused_lease(suite_file, "demo", "killed")
    assert experiment.lock_cluster(suite_file, "demo", "other")
    assert not experiment.release_unused_lease(suite_file, "demo", "killed")
