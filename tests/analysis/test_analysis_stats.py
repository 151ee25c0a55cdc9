"""Statistics against scipy and against cases computed by hand (ties, tiny groups)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kubexp.analysis import stats


def test_kruskal_wallis_matches_hand_computation_without_ties() -> None:
    # Ranks 1..3 and 4..6: H = 12/(6*7) * (6^2/3 + 15^2/3) - 3*7 = 27/7.
    result = stats.kruskal_wallis({"a": [1, 2, 3], "b": [4, 5, 6]})
    assert result.ran and result.message == ""
    assert result.statistic == pytest.approx(27 / 7)
    assert result.p_value == pytest.approx(scipy_stats.chi2.sf(27 / 7, 1))
    assert result.p_value == pytest.approx(0.04953, abs=1e-5)
    assert result.sizes == {"a": 3, "b": 3}


def test_kruskal_wallis_tie_correction_by_hand() -> None:
    # Pooled 1,2,2,2,3,4 -> ranks 1,3,3,3,5,6; rank sums 7 and 14.
    h = 12 / 42 * (7**2 / 3 + 14**2 / 3) - 21
    correction = 1 - (3**3 - 3) / (6**3 - 6)
    result = stats.kruskal_wallis({"a": [1, 2, 2], "b": [2, 3, 4]})
    assert result.statistic == pytest.approx(h / correction)
    assert result.statistic == pytest.approx(2.6344, abs=1e-4)


def test_kruskal_wallis_agrees_with_scipy_on_random_tied_data() -> None:
    rng = np.random.default_rng(7)
    groups = {f"g{i}": rng.integers(0, 20, size=n).astype(float) for i, n in enumerate([5, 9, 14])}
    expected = scipy_stats.kruskal(*groups.values())
    result = stats.kruskal_wallis(groups, unit="second")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert "paper" in result.label and "seconds" in result.label


def test_kruskal_wallis_drops_nan_values() -> None:
    result = stats.kruskal_wallis({"a": [1, 2, 3, float("nan")], "b": [4, 5, 6]})
    assert result.sizes["a"] == 3
    assert result.statistic == pytest.approx(27 / 7)


def test_kruskal_wallis_names_groups_below_minimum_size() -> None:
    result = stats.kruskal_wallis({"ramdisk": [1, 2, 3], "disk": [4, 5]})
    assert not result.ran and result.p_value is None
    assert "disk: 2" in result.message and "at least 3" in result.message
    assert "experiments" in result.message and "repetitions" in result.message
    assert "ramdisk" not in result.message


def test_kruskal_wallis_needs_two_groups_and_varying_values() -> None:
    single = stats.kruskal_wallis({"only": [1, 2, 3]})
    assert not single.ran and "2 groups" in single.message
    identical = stats.kruskal_wallis({"a": [5, 5, 5], "b": [5, 5, 5]})
    assert not identical.ran and "identical" in identical.message


def test_minimum_group_size_is_configurable() -> None:
    assert stats.kruskal_wallis({"a": [1], "b": [2, 3]}, min_group_size=1).ran
    assert not stats.kruskal_wallis({"a": [1, 2, 3, 4], "b": [2, 3, 4, 5]}, min_group_size=5).ran


def _dunn_by_hand(groups: list[list[float]]) -> dict[tuple[int, int], float]:
    pooled = np.concatenate(groups)
    ranks = scipy_stats.rankdata(pooled)
    n_total = pooled.size
    _, tie_counts = np.unique(pooled, return_counts=True)
    tie_term = ((tie_counts**3 - tie_counts).sum()) / (12 * (n_total - 1))
    variance = n_total * (n_total + 1) / 12 - tie_term
    bounds = np.cumsum([0] + [len(g) for g in groups])
    mean_ranks = [ranks[bounds[i]:bounds[i + 1]].mean() for i in range(len(groups))]
    raw = {}
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            z = (mean_ranks[i] - mean_ranks[j]) / math.sqrt(variance * (1 / len(groups[i]) + 1 / len(groups[j])))
            raw[(i, j)] = 2 * scipy_stats.norm.sf(abs(z))
    pairs = list(raw)
    adjusted = stats.holm([raw[p] for p in pairs])
    return {pair: float(p) for pair, p in zip(pairs, adjusted, strict=True) if p is not None}


def test_dunn_holm_matches_hand_computation_without_ties() -> None:
    matrix = stats.dunn_holm({"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]})
    # Mean ranks 2, 5, 8; SE = sqrt(9*10/12 * 2/3) = sqrt(5).
    p_ab = 2 * scipy_stats.norm.sf(3 / math.sqrt(5))
    p_ac = 2 * scipy_stats.norm.sf(6 / math.sqrt(5))
    assert matrix.loc["a", "c"] == pytest.approx(3 * p_ac)
    assert matrix.loc["a", "b"] == pytest.approx(max(2 * p_ab, 3 * p_ac))
    assert matrix.loc["b", "c"] == pytest.approx(matrix.loc["a", "b"])
    assert matrix.loc["c", "a"] == matrix.loc["a", "c"]
    assert list(matrix.index) == ["a", "b", "c"]


def test_dunn_holm_with_ties_matches_hand_formula() -> None:
    groups = [[1, 2, 2, 3], [2, 3, 3, 5, 6], [5, 6, 6, 7]]
    expected = _dunn_by_hand([[float(v) for v in g] for g in groups])
    matrix = stats.dunn_holm({"x": groups[0], "y": groups[1], "z": groups[2]})
    labels = ["x", "y", "z"]
    for (i, j), p in expected.items():
        assert matrix.loc[labels[i], labels[j]] == pytest.approx(p)


def test_dunn_holm_refuses_tiny_groups() -> None:
    with pytest.raises(ValueError, match="too few experiments per group"):
        stats.dunn_holm({"a": [1, 2], "b": [3, 4, 5]})


def test_holm_by_hand_keeps_missing_entries() -> None:
    adjusted = stats.holm([0.01, 0.04, 0.03, None])
    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[1] == pytest.approx(0.06)
    assert adjusted[2] == pytest.approx(0.06)
    assert adjusted[3] is None
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]


def test_cliffs_delta_by_hand_with_ties() -> None:
    # x > y in 2 pairs, x < y in 5 pairs, 2 ties, of 9.
    assert stats.cliffs_delta([1, 2, 3], [2, 2, 4]) == pytest.approx(-1 / 3)
    assert stats.cliffs_delta([5, 6], [1, 2]) == 1.0
    assert stats.cliffs_delta([1, 2], [5, 6]) == -1.0
    assert stats.cliffs_delta([3, 3], [3, 3, 3]) == 0.0


def test_cliffs_delta_agrees_with_mann_whitney_u() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 30, 400).astype(float)
    y = rng.integers(5, 35, 300).astype(float)
    u = scipy_stats.mannwhitneyu(x, y).statistic  # counts ties as one half
    assert stats.cliffs_delta(x, y) == pytest.approx(2 * u / (x.size * y.size) - 1)
    assert stats.cliffs_delta(y, x) == pytest.approx(-stats.cliffs_delta(x, y))


def test_cliffs_delta_needs_values() -> None:
    with pytest.raises(ValueError, match="both samples"):
        stats.cliffs_delta([], [1.0])


@pytest.mark.parametrize(("delta", "label"), [(0.1, "negligible"), (-0.2, "small"), (0.4, "medium"), (-0.9, "large")])
def test_delta_magnitude(delta: float, label: str) -> None:
    assert stats.delta_magnitude(delta) == label


@pytest.mark.parametrize("n", [1, 2, 5, 6, 9, 20, 101])
def test_median_interval_is_the_narrowest_order_statistic_interval_with_exact_coverage(n: int) -> None:
    values = np.random.default_rng(n).normal(100, 15, n)
    ordered = np.sort(values)
    interval = stats.median_interval(values, confidence=0.95)
    assert interval.median == pytest.approx(np.median(values))

    def coverage(k: int) -> float:  # P(x(k) <= m < x(n+1-k)) = P(k <= B(n, 1/2) <= n - k), by hand
        return sum(math.comb(n, j) for j in range(k, n - k + 1)) / 2**n

    reaching = [k for k in range(1, (n + 1) // 2 + 1) if coverage(k) >= 0.95]
    if not reaching:  # n <= 5: no interval, only the range's real coverage
        assert (interval.low, interval.high, interval.relative_width) == (None, None, None)
        assert interval.coverage == pytest.approx(coverage(1) if n > 1 else 0.0)
        assert f"no 95% interval: n = {n}" in interval.text
    else:
        k = max(reaching)
        assert (interval.low, interval.high) == (ordered[k - 1], ordered[n - k])
        assert interval.coverage == pytest.approx(coverage(k)) and interval.coverage >= 0.95


def test_median_interval_at_n_2_says_why_there_is_none() -> None:
    interval = stats.median_interval([30.0, 34.0])
    assert interval.low is None and interval.coverage == 0.5
    assert interval.text == ("no 95% interval: n = 2, and even the full range covers the median only 50.0% of "
                             "the time; 6 values are needed")
    assert stats.min_n_for(0.95) == 6 and stats.min_n_for(0.99) == 8


def test_median_interval_of_constant_values_has_zero_width() -> None:
    interval = stats.median_interval([120] * 6)
    assert (interval.low, interval.median, interval.high) == (120, 120, 120)
    assert interval.relative_width == 0


def test_repetitions_verdict_pinned() -> None:
    verdict = stats.repetitions_verdict([100, 101, 99, 100, 100, 100, 101, 99, 100], target_relative_width=0.1)
    assert verdict.pinned and verdict.more_needed == 0
    assert verdict.interval is not None and verdict.interval.relative_width is not None
    assert verdict.interval.relative_width <= 0.1


def test_repetitions_verdict_estimates_more_repetitions() -> None:
    values = [80, 120, 95, 105, 140, 90, 110]
    verdict = stats.repetitions_verdict(values, target_relative_width=0.1)
    assert not verdict.pinned
    assert verdict.interval is not None
    width = verdict.interval.relative_width
    assert width is not None and width > 0.1
    assert verdict.more_needed == math.ceil(7 * (width / 0.1) ** 2) - 7
    assert verdict.more_needed is not None and verdict.more_needed > 0
    assert f"{verdict.more_needed} more" in verdict.message


def test_repetitions_verdict_without_an_interval_counts_to_the_first_one() -> None:
    verdict = stats.repetitions_verdict([100, 110, 90, 105], min_n=3)
    assert not verdict.pinned and verdict.more_needed == 2 and "no 95% interval: n = 4" in verdict.message


def test_repetitions_verdict_below_minimum_and_zero_median() -> None:
    tiny = stats.repetitions_verdict([100, 110])
    assert not tiny.pinned and tiny.more_needed is None and "at least 3" in tiny.message
    assert "no 95% interval: n = 2" in tiny.message
    zero = stats.repetitions_verdict([0] * 8 + [5])
    assert zero.more_needed is None and "median is 0" in zero.message
