"""Table 1-style comparisons and the per-scenario repetition verdicts, checked against scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_data import PAPER_ETCD_MATRIX, Frames, build_frames
from scipy import stats as scipy_stats

from kubexp.analysis import report_html as html
from kubexp.analysis.comparisons import POOLED, compare_factor, comparisons, pairwise, repetition_table
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
    interval = row["ci[ramdisk]"]  # n = 4: even [min, max] covers the median only 1 - 2/2^4 = 87.5 % of the time
    assert (interval.low, interval.high, interval.coverage) == (None, None, 0.875)
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
    assert [(pair.a, pair.b) for pair in row["pairs"]] == [("1", "2"), ("1", "8"), ("2", "8")]


# Three levels of 3 experiments each, small enough to compute by hand.
HAND = {1: [1.0, 2.0, 3.0], 2: [2.0, 3.0, 4.0], 8: [10.0, 11.0, 12.0]}


def _hand_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    per_experiment = pd.DataFrame([{"pods": pods, "successes_median": value} for pods, values in HAND.items()
                                   for value in values])
    steady = per_experiment.rename(columns={"successes_median": "successes"})
    return per_experiment, steady


def test_pairs_of_three_levels_against_hand_computed_values() -> None:
    """Cliff's delta and Dunn-Holm p of every pair of levels, worked out by hand.

    Cliff's delta, 1 vs 2: of the 9 pairs (x, y) one has x > y (3 > 2), six have x < y and two
    tie, so (1 - 6) / 9 = -5/9; 1 vs 8 and 2 vs 8: every x below every y, -1.
    Dunn: the ranks of 1,2,2,3,3,4,10,11,12 are 1, 2.5, 2.5, 4.5, 4.5, 6, 7, 8, 9, so the mean
    ranks are 8/3, 13/3 and 8. With N = 9 and two pairs of ties the variance of a difference of
    mean ranks of groups of 3 is (9 * 10 / 12 - (6 + 6) / (12 * 8)) * (1/3 + 1/3) = 59/12; the
    two-sided normal p of |difference| / sqrt(59/12) is 0.45226 (1-2), 0.016161 (1-8), 0.098204
    (2-8), which Holm multiplies by 1, 3 and 2.
    """
    per_experiment, steady = _hand_frames()
    table = compare_factor(per_experiment, steady, "pods", within=[])
    assert len(table) == 1
    row = table.iloc[0]
    assert np.isnan(row["cliffs_delta"])  # no single first-vs-second effect for three levels
    pairs = {(pair.a, pair.b): pair for pair in row["pairs"]}
    assert list(pairs) == [("1", "2"), ("1", "8"), ("2", "8")]
    assert pairs["1", "2"].cliffs_delta == pytest.approx(-5 / 9)
    assert pairs["1", "2"].magnitude == "large"
    assert pairs["1", "8"].cliffs_delta == pairs["2", "8"].cliffs_delta == -1.0
    assert pairs["1", "2"].p_dunn_holm == pytest.approx(0.45226, abs=1e-5)
    assert pairs["1", "8"].p_dunn_holm == pytest.approx(3 * 0.016161, abs=1e-5)
    assert pairs["2", "8"].p_dunn_holm == pytest.approx(2 * 0.098204, abs=1e-5)
    assert all((pair.n_a, pair.n_b) == (3, 3) for pair in pairs.values())
    assert row["dunn_pairs"] == "1<>8 (p=0.048, delta -1.00 large)"
    long = pairwise(table)
    assert list(long.columns) == ["a", "b", "n_a", "n_b", "cliffs_delta", "magnitude", "p_dunn_holm"]
    assert long["cliffs_delta"].tolist() == pytest.approx([-5 / 9, -1.0, -1.0])


def test_pairs_keep_their_effect_size_when_the_groups_are_too_small_to_test() -> None:
    per_experiment, steady = _hand_frames()
    table = compare_factor(per_experiment, steady, "pods", within=[], settings=AnalysisSettings(min_group_size=4))
    row = table.iloc[0]
    assert pd.isna(row["p_experiments"]) and row["dunn_pairs"] == ""
    assert [pair.cliffs_delta for pair in row["pairs"]] == pytest.approx([-5 / 9, -1.0, -1.0])
    assert all(np.isnan(pair.p_dunn_holm) for pair in row["pairs"])


def test_report_labels_effect_sizes_and_p_values_apart() -> None:
    per_experiment, steady = _hand_frames()
    three = compare_factor(per_experiment, steady, "pods", within=[])
    two_levels = per_experiment[per_experiment["pods"] != 8]
    two = compare_factor(two_levels, steady[steady["pods"] != 8], "pods", within=[])
    page = html.statistics({"pods": three, "workers": two.rename(columns={"pods": "workers"})}, AnalysisSettings(),
                           finished=9)
    pods = page.split("<h3>Does pods change")[1].split("<h3>")[0]
    header = pods.split("</thead>")[0]
    assert "<th>pairs that differ: Dunn-Holm p &lt; 0.05 (post-hoc test)</th>" in header
    assert "<th>Cliff&#x27;s delta of those pairs (effect size)</th>" in header
    first_row = pods.split("<tbody>")[1].split("</tr>")[0]
    assert "<td>1&lt;&gt;8: 0.048</td><td>1&lt;&gt;8: -1.00 (large)</td>" in first_row
    every_pair = pods.split("<details>")[1]
    assert "All 3 pairs of pods levels" in every_pair
    for pair, delta, p in (("1 vs 2", "-0.56 (large)", "0.45"), ("1 vs 8", "-1.00 (large)", "0.048"),
                           ("2 vs 8", "-1.00 (large)", "0.2")):
        assert f"<td class=text>{pair}</td><td>3 / 3</td><td>{delta}</td><td>{p}</td>" in every_pair
    workers = page.split("<h3>Does workers change")[1]
    assert "<th>Cliff&#x27;s delta, workers=1 vs 2 (effect size)</th>" in workers
    assert "<td>-0.56 (large)</td>" in workers and "<details>" not in workers


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
    for _, row in table.iterrows():  # 4 experiments each: too few for any 95 % interval of a median
        assert pd.isna(row["ci_low"]) and pd.isna(row["ci_high"]) and not row["pinned"]
        assert row["more_needed"] == 2 and "no 95% interval: n = 4" in row["verdict"]
    strict = repetition_table(etcd_frames.per_experiment, experiments, list(PAPER_ETCD_MATRIX),
                              AnalysisSettings(min_group_size=5))
    assert strict["more_needed"].isna().all()
    assert strict["verdict"].str.contains("at least 5").all()
