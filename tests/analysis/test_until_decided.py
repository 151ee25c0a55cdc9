"""Repetitions until decided: undecided scenarios grow one repetition per round, the selection runs only them,
and the loop stops when decided or out of budget. Experiments are run here by the store's own selection and
ingest (the command line runs them through an Airflow backfill: tests/e2e/test_e2e_airflow_rest.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from analysis_data import constant_load

from kubexp.analysis import gate
from kubexp.orchestration.until_decided import until_decided
from kubexp.records import Collected
from kubexp.store import attempts, db, experiments, ingest, migrations, selection, status, suites
from kubexp.suite import Suite, load_suite


@pytest.fixture
def gate_suite(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Suite:
    migrations.upgrade(database_url)
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    path = tmp_path / "grow.yaml"
    path.write_text(yaml.safe_dump({"suite": "grow", "platform": "local", "repetitions": 3, "seed": 11,
                                    "defaults": {"duration_s": 10},
                                    "matrix": {"workers": [2, 4], "cpu_limit_millicores": [1000, 500]}},
                                   sort_keys=False))
    suite = load_suite(path)
    with db.connect() as conn:
        suites.sync_suite(conn, suite)
    return suite


class Runner:
    """Runs experiments as a suite DAG's runs do: select by the rule, store per-second rows, finish.

    At workers=2 the 500 m candidate serves half (decided after 4 repetitions per level); at workers=4 both
    levels scatter by 30 % (never decided within the budget)."""

    def __init__(self, suite: Suite) -> None:
        self.suite, self.rng, self.picked, self.runs = suite, np.random.default_rng(5), [], 0

    def value(self, params: dict[str, Any]) -> float:
        if params["workers"] == 2:
            return 100.0 * (0.5 if params["cpu_limit_millicores"] == 500 else 1.0) * self.rng.uniform(0.99, 1.01)
        return 100.0 * self.rng.uniform(0.7, 1.3)

    def __call__(self, count: int) -> list[dict[str, Any]]:
        result = []
        with db.connect() as conn:
            for _ in range(count):
                self.runs += 1
                chosen = selection.select_next_experiment(conn, self.suite, f"run-{self.runs}")
                assert chosen is not None, "a run found nothing to do"
                self.picked.append((chosen.params["workers"], chosen.params["cpu_limit_millicores"]))
                attempt = attempts.open_attempt(conn, chosen.experiment_id, f"run-{self.runs}", 1, "host")
                ingest.store_experiment_data(conn, chosen.experiment_id, attempt,
                                             Collected(load=constant_load(10, self.value(chosen.params))),
                                             t0=datetime(2026, 1, 1, tzinfo=UTC))
                experiments.finish_experiment(conn, chosen.experiment_id, attempt)
                result.append({"state": "success"})
        return result


def inconclusive(conn: Any) -> list[str]:
    comparisons = gate.compare(conn, "grow", "cpu_limit_millicores", "1000", "500")
    return [s for c in comparisons if c.outcome == "inconclusive" for s in (c.baseline_scenario, c.candidate_scenario)]


def test_undecided_scenarios_grow_until_decided_or_out_of_budget(gate_suite: Suite) -> None:
    runner, said = Runner(gate_suite), []
    outcome = until_decided("grow", inconclusive, 6, run=runner, say=said.append)
    rounds = [(len(r.added), r.runs, r.finished) for r in outcome.rounds]
    # the 12 planned first; then all four scenarios grow once; workers=2 is decided at 4 per level, workers=4 goes on
    assert rounds == [(0, 12, 12), (4, 4, 4), (2, 2, 2), (2, 2, 2)], rounds
    assert outcome.stopped.startswith("budget spent: the 2 undecided scenario(s) plan 6 repetitions")
    assert sorted(runner.picked[16:]) == [(4, 500), (4, 500), (4, 1000), (4, 1000)]  # only the undecided ran
    with db.connect() as conn:
        extra = dict(conn.execute("SELECT sc.params ->> 'workers', sum(ss.extra_repetitions) FROM suite_scenario ss "
                                  "JOIN scenario sc ON sc.id = ss.scenario_id WHERE ss.suite = 'grow' "
                                  "GROUP BY 1").fetchall())
        assert extra == {"2": 2, "4": 6}
        found = {c.combination["workers"]: c.outcome for c in gate.compare(conn, "grow", "cpu_limit_millicores",
                                                                         "1000", "500")}
        assert found == {2: "worse", 4: "inconclusive"}
        counts = status.suite_status(conn, "grow")
        assert (counts["experiments"], counts["finished"], counts["unfinished"]) == (20, 20, 0)
        # a reload of the unchanged suite keeps the added repetitions
        suites.sync_suite(conn, gate_suite)
        assert status.suite_status(conn, "grow")["experiments"] == 20
    assert any("one more repetition" in line for line in said)


def test_nothing_is_added_once_everything_is_decided_or_the_budget_is_the_plan(gate_suite: Suite) -> None:
    runner = Runner(gate_suite)
    outcome = until_decided("grow", inconclusive, 3, run=runner, say=lambda line: None)
    assert [(len(r.added), r.runs) for r in outcome.rounds] == [(0, 12)]
    assert outcome.stopped.startswith("budget spent")
    outcome = until_decided("grow", lambda conn: [], 10, run=runner, say=lambda line: None)
    assert outcome.rounds == [] and outcome.stopped == "every answer is decided"


def test_a_round_whose_runs_all_fail_stops_the_loop(gate_suite: Suite) -> None:
    outcome = until_decided("grow", inconclusive, 6, run=lambda count: [{"state": "failed"}] * count,
                            say=lambda line: None)
    assert [(r.runs, r.failed_runs, r.finished) for r in outcome.rounds] == [(12, 12, 0)]
    assert outcome.stopped == "round 1 finished no experiment (12 failed run(s)); stopped"
