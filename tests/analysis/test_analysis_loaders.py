"""Loaders and the suite dataset against a real PostgreSQL filled through the store's own API."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from analysis_data import StoredSuite

from kubexp.analysis import loaders
from kubexp.analysis.dataset import AnalysisSettings, load_suite_data
from kubexp.records import LOAD_SECOND_COLUMNS
from kubexp.store import db


def test_experiments_carry_status_attempts_and_parameters(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn:
        frame = loaders.experiments(conn, "analysis-store")
    assert len(frame) == 16
    assert (frame["status"] == "finished").sum() == stored_suite.finished == 14
    assert {"pods", "workers", "mesh", "etcd_storage", "duration_s", "think_time_ms"} <= set(frame.columns)
    assert "params" not in frame.columns
    assert sorted(frame["workers"].unique()) == [20, 60]
    assert frame["planned"].all() and frame["active"].all()
    open_ones = frame[frame["status"] == "unfinished"]
    assert (open_ones["last_outcome"] == "failed").all()
    assert open_ones["last_error"].str.contains("load servers unreachable").all()
    assert (open_ones["failed_attempts"] == 1).all() and open_ones["t0"].isna().all()
    assert frame["scenario_index"].is_monotonic_increasing


def test_filters_by_scenario_and_experiment(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn:
        every = loaders.experiments(conn, "analysis-store")
        scenario_id = every["scenario_id"].iloc[0]
        one_scenario = loaders.experiments(conn, "analysis-store", scenario_id=scenario_id)
        chosen = every["experiment_id"].iloc[[0, 5]].tolist()
        two = loaders.experiments(conn, "analysis-store", experiment_ids=chosen)
        seconds = loaders.load_seconds(conn, "analysis-store", scenario_id=scenario_id)
    assert (one_scenario["scenario_id"] == scenario_id).all() and len(one_scenario) == 4
    assert sorted(two["experiment_id"]) == sorted(chosen)
    finished_here = one_scenario.loc[one_scenario["status"] == "finished", "experiment_id"]
    assert set(seconds["experiment_id"]) == set(finished_here)


def test_load_seconds_stream_every_finished_second(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn:
        seconds = loaders.load_seconds(conn, "analysis-store")
        few = loaders.load_seconds(conn, "analysis-store", columns=("successes",))
        bare = loaders.load_seconds(conn, "analysis-store", columns=("successes",), parameters=False)
        with pytest.raises(ValueError, match="unknown load_second columns"):
            loaders.load_seconds(conn, "analysis-store", columns=("successes; DROP TABLE x",))
    assert list(seconds.columns)[:len(LOAD_SECOND_COLUMNS) + 2] == ["experiment_id", *LOAD_SECOND_COLUMNS,
                                                                     "scenario_id"]
    assert len(seconds) == 14 * 120
    assert seconds.groupby("experiment_id")["t"].agg(["min", "max", "size"]).eq([0, 119, 120]).all().all()
    assert list(few.columns)[:4] == ["experiment_id", "t", "successes", "scenario_id"]
    assert list(bare.columns) == ["experiment_id", "t", "successes"]
    assert (seconds["successes"] + seconds["failures"] == seconds["requests"]).all()


LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "load_seconds": loaders.load_seconds, "platform_events": loaders.platform_events,
    "metric_points": loaders.metric_points, "metric_completeness": loaders.metric_completeness,
    "attempts": loaders.attempts}
PER_SECOND = {"load_seconds", "metric_points"}  # text parameters as categoricals, numbers as numbers


@pytest.mark.parametrize("name", LOADERS)
def test_loaders_carry_the_scenario_parameters(stored_suite: StoredSuite, name: str) -> None:
    with db.connect(stored_suite.url) as conn:
        frame = LOADERS[name](conn, "analysis-store")
    # Expected from the suite file itself: each scenario's parameters.
    scenarios = {scenario.id: scenario.params for scenario in stored_suite.suite.scenarios()}
    parameters = list(next(iter(scenarios.values())))
    assert {"pods", "workers", "mesh", "etcd_storage", "duration_s", "think_time_ms"} <= set(parameters)
    assert {"scenario_id", *parameters} <= set(frame.columns) and "params" not in frame.columns
    assert len(frame) > 0 and frame["scenario_id"].notna().all()
    for column in ("scenario_id", *parameters):
        if name in PER_SECOND and column in ("scenario_id", "mesh", "etcd_storage"):
            assert isinstance(frame[column].dtype, pd.CategoricalDtype), column
        if column in ("pods", "workers", "duration_s", "think_time_ms"):
            assert pd.api.types.is_numeric_dtype(frame[column]), column
        values = frame[column].astype(object).to_numpy()
        expected = [scenarios[s].get(column) if column != "scenario_id" else s
                    for s in frame["scenario_id"].astype(str)]
        assert [None if pd.isna(v) else v for v in values] == expected, column
    # And the scenario is the experiment's own.
    with db.connect(stored_suite.url) as conn:
        experiments = loaders.experiments(conn, "analysis-store").set_index("experiment_id")["scenario_id"]
    assert (frame["scenario_id"].astype(str).to_numpy()
            == frame["experiment_id"].astype(str).map(experiments).to_numpy()).all()
    assert sorted(frame["workers"].astype(int).unique()) == [20, 60]
    assert len(frame[frame["workers"] > 20]) == (frame["workers"].astype(int) == 60).sum() > 0


@pytest.mark.parametrize("name", LOADERS)
def test_loaders_filter_by_scenario_and_experiment(stored_suite: StoredSuite, name: str) -> None:
    load = LOADERS[name]
    with db.connect(stored_suite.url) as conn:
        experiments = loaders.experiments(conn, "analysis-store")
        every = load(conn, "analysis-store")
        scenario_id = experiments["scenario_id"].iloc[-1]
        one_scenario = load(conn, "analysis-store", scenario_id=scenario_id)
        finished = experiments.loc[experiments["status"] == "finished", "experiment_id"]
        unfinished = experiments.loc[experiments["status"] != "finished", "experiment_id"]
        chosen = [finished.iloc[0], finished.iloc[-1], unfinished.iloc[0]]
        picked = load(conn, "analysis-store", experiment_ids=chosen)
    assert len(every["scenario_id"].unique()) == 4
    in_scenario = every[every["scenario_id"] == scenario_id]
    assert len(one_scenario) == len(in_scenario) > 0
    assert (one_scenario["scenario_id"] == scenario_id).all()
    assert set(one_scenario["experiment_id"]) == set(in_scenario["experiment_id"])
    # Only attempts list experiments that did not finish.
    expected = set(chosen) if name == "attempts" else set(chosen[:2])
    assert set(picked["experiment_id"].astype(str)) == expected
    assert len(picked) == every["experiment_id"].astype(str).isin(chosen).sum()


def test_views_events_metrics_and_attempts(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn:
        summary = loaders.experiment_summary(conn, "analysis-store")
        scenarios = loaders.scenario_summary(conn, "analysis-store")
        events = loaders.platform_events(conn, "analysis-store")
        points = loaders.metric_points(conn, "analysis-store", name="replicas")
        completeness = loaders.metric_completeness(conn, "analysis-store")
        attempts = loaders.attempts(conn, "analysis-store")
    assert len(summary) == 14 and "etcd_storage" in summary and "params" not in summary
    assert len(scenarios) == 4 and scenarios["experiments"].sum() == 14
    assert set(events["kind"]) <= {"Started", "Ready", "OOMKilled", "Restarted", "EtcdSlowRequest"}
    assert (events.loc[events["kind"] == "Ready", "t"] < 0).all()  # the rollout, before t = 0
    assert set(points["name"]) == {"replicas"} and points["labels"].iloc[0] == {"deployment": "app"}
    assert len(completeness) == 14 and completeness["completeness_min"].between(0.85, 1).all()
    assert len(attempts) == 16 and attempts["counted"].sum() == 14
    assert attempts["facts"].iloc[0]["generator"] == "kubexp.analysis.synthetic"


def test_unknown_suite_is_named(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn, pytest.raises(loaders.AnalysisDataError,
                                                             match="'nope' is not in the store.*analysis-store"):
        loaders.suite_record(conn, "nope")


def test_configured_window_matches_the_stores_own_summaries(stored_suite: StoredSuite) -> None:
    """The analysis' steady-state figures equal the SQL view's when the suite fixes the window."""
    with db.connect(stored_suite.url) as conn:
        data = load_suite_data(conn, "analysis-store")
        view = loaders.experiment_summary(conn, "analysis-store").set_index("experiment_id")
    assert (data.settings.warmup_s, data.settings.cooldown_s) == (10, 5)
    assert (data.windows[["window_start_s", "window_end_s"]] == [10, 115]).all().all()
    mine = data.per_experiment.set_index("experiment_id").loc[view.index]
    assert np.allclose(mine["successes_mean"], view["successes_per_s_mean"])
    assert np.allclose(mine["successes_median"], view["successes_per_s_median"])
    assert np.allclose(mine["successes_std"], view["successes_per_s_std"])
    assert np.allclose(mine["elapsed_mean_ms"], view["elapsed_mean_ms"])
    assert (mine["seconds"] == view["seconds"]).all()
    assert data.parameters == ["etcd_storage", "workers"]
    assert len(data.steady) == 14 * 105 and {"etcd_storage", "workers", "scenario_id"} <= set(data.steady.columns)


def test_detected_window_when_the_suite_sets_none(stored_suite: StoredSuite) -> None:
    with db.connect(stored_suite.url) as conn:
        data = load_suite_data(conn, "analysis-store", settings=AnalysisSettings())
    assert set(data.windows["warmup_method"]) == {"mser-5"}
    assert "MSER-5" in data.settings.window_description()
    assert (data.windows["window_start_s"] % 5 == 0).all()
    assert (data.windows["window_end_s"] <= 120).all()


@pytest.mark.parametrize(("analysis", "message"), [
    ({"warmup": 3}, r"suite x: analysis: .*'warmup' was unexpected\); allowed: alpha, confidence, cooldown_s"),
    ({"warmup_s": -1}, "suite x: analysis.warmup_s: -1 is less than the minimum of 0; allowed: minimum 0"),
    ({"alpha": 1}, "analysis.alpha: .*; allowed: exclusiveMaximum 1"),
    ({"target_relative_ci_width": "10%"}, "target_relative_ci_width"),
    ({"min_group_size": True}, "min_group_size"),
])
def test_analysis_settings_are_checked(analysis: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AnalysisSettings.from_mapping(analysis, where="suite x")


def test_settings_from_mapping() -> None:
    settings = AnalysisSettings.from_mapping({"warmup_s": 30, "target_relative_ci_width": 0.05}, seed=9)
    assert (settings.warmup_s, settings.cooldown_s, settings.target_relative_ci_width, settings.seed) == (30, None,
                                                                                                      0.05, 9)
    assert pd.isna(pd.NA) is True  # guard: pandas NA handling used by the loaders
