"""Table 1-style comparisons and the per-scenario repetition verdicts, checked against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_data import PAPER_ETCD_MATRIX, Frames, build_frames
from scipy import stats as scipy_stats

from kubexp.analysis.comparisons import POOLED, compare_factor, comparisons, repetition_table
from kubexp.analysis.dataset import AnalysisSettings

OTHERS = ["pods", "workers", "mesh"]


def test_table_one_rows_match_scipy(etcd_frames: Frames) -> None:
    table = compare_factor(etcd_frames.per_experiment, etcd_frames.steady, "etcd_storage", within=OTHERS)
    assert len(table) == 8 + 1  # 2 pods x 2 workers x 2 meshes, plus the pooled row
    assert table.iloc[-1][OTHERS].tolist() == [POOLED] * 3
    row = table[(table["pods"] == 20) & (table["workers"] == 120) & (table["mesh"] == "native")].iloc[0]
    experiments = etcd_frames.per_experiment
    scenario = experiments[(experiments["pods"] == 20) & (experiments["workers"] == 120)
                           & (experiments["mesh"] == "native")]
    disk = scenario.loc[scenario["etcd_storage"] == "disk", "successes_median"]
    ram = scenario.loc[scenario["etcd_storage"] == "ramdisk", "successes_median"]
    assert row["p_experiments"] == pytest.approx(scipy_stats.kruskal(disk, ram).pvalue)
    seconds = etcd_frames.steady
    in_scenario = seconds[(seconds["pods"] == 20) & (seconds["workers"] == 120) & (seconds["mesh"] == "native")]
    assert row["p_seconds"] == pytest.approx(scipy_stats.kruskal(
        in_scenario.loc[in_scenario["etcd_storage"] == "disk", "successes"],
        in_scenario.loc[in_scenario["etcd_storage"] == "ramdisk", "successes"]).pvalue)
    assert row["n[disk]"] == row["n[ramdisk]"] == 4
    assert row["median[ramdisk]"] == pytest.approx(np.median(ram))
    low, high = row["ci[ramdisk]"]
    assert low <= row["median[ramdisk]"] <= high
    # Synthetic disk is 15 % slower: every disk experiment below every RAM disk one.
    assert row["cliffs_delta"] == -1.0 and row["magnitude"] == "large"
    assert row["note"] == ""


def test_seconds_as_unit_is_far_more_significant_than_experiments(etcd_frames: Frames) -> None:
    table = compare_factor(etcd_frames.per_experiment, etcd_frames.steady, "mesh", within=["pods", "workers",
                                                                                            "etcd_storage"])
    ran = table.dropna(subset=["p_experiments"])
    assert not ran.empty
    assert (ran["p_seconds"] < ran["p_experiments"]).all()


def test_holm_adjusts_over_the_rows(etcd_frames: Frames) -> None:
    table = compare_factor(etcd_frames.per_experiment, etcd_frames.steady, "etcd_storage", within=OTHERS)
    raw = table["p_experiments"].to_numpy()
    adjusted = table["p_experiments_holm"].to_numpy()
    assert (adjusted >= raw - 1e-15).all()
    smallest = int(np.argmin(raw))
    assert adjusted[smallest] == pytest.approx(min(1.0, raw[smallest] * len(raw)))
    assert (table["significant"] == (table["p_experiments_holm"] < 0.05)).all()


def test_tiny_groups_give_a_message_instead_of_a_p_value() -> None:
    frames = build_frames({"workers": [40], "etcd_storage": ["ramdisk", "disk"]}, repetitions=2, seconds=120)
    table = compare_factor(frames.per_experiment, frames.steady, "etcd_storage", within=[])
    assert len(table) == 1
    row = table.iloc[0]
    assert pd.isna(row["p_experiments"]) and not row["significant"]
    assert "too few experiments per group" in row["note"] and "at least 3" in row["note"]
    # The paper's per-second variant still runs on 2 x 2 x ~95 seconds.
    assert row["p_seconds"] < 1


def test_more_than_two_levels_list_the_dunn_pairs() -> None:
    frames = build_frames({"pods": [1, 2, 8]}, repetitions=4, seconds=120, seed=3)
    table = compare_factor(frames.per_experiment, frames.steady, "pods", within=[])
    row = table.iloc[0]
    assert row["p_experiments"] < 0.05
    assert "1<>8" in row["dunn_pairs"]
    assert np.isnan(row["cliffs_delta"])


def test_comparisons_cover_every_varying_parameter(etcd_frames: Frames) -> None:
    tables = comparisons(etcd_frames.per_experiment, etcd_frames.steady, list(PAPER_ETCD_MATRIX))
    assert set(tables) == set(PAPER_ETCD_MATRIX)
    assert list(tables["pods"].columns[:3]) == ["workers", "mesh", "etcd_storage"]


def test_repetition_table_by_scenario(etcd_frames: Frames) -> None:
    experiments = pd.concat([etcd_frames.experiments, pd.DataFrame([{
        **etcd_frames.experiments.iloc[0].to_dict(), "experiment_id": "unfinished-1", "repetition": 5,
        "status": "unfinished"}])])
    settings = AnalysisSettings(target_relative_ci_width=0.05)
    table = repetition_table(etcd_frames.per_experiment, experiments, list(PAPER_ETCD_MATRIX), settings)
    assert len(table) == 16
    first = table.iloc[0]
    assert (first["finished"], first["planned"]) == (4, 5)
    assert (table["finished"] == 4).all()
    for _, row in table.iterrows():
        assert row["ci_low"] <= row["median"] <= row["ci_high"]
        assert row["pinned"] == (row["relative_width"] <= 0.05)
        assert (row["more_needed"] == 0) == row["pinned"]
    strict = repetition_table(etcd_frames.per_experiment, experiments, list(PAPER_ETCD_MATRIX),
                              AnalysisSettings(min_group_size=5))
    assert strict["more_needed"].isna().all()
    assert strict["verdict"].str.contains("at least 5").all()
