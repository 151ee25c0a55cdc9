"""Statistics for comparing scenario groups: Kruskal-Wallis, Dunn-Holm, Cliff's delta, exact median intervals.

The unit of analysis matters. Per-second rows of one experiment are autocorrelated, so
treating them as independent samples (as the paper did for its Table 1) overstates
significance. Every test here therefore says which unit it used: `experiment` (one value
per experiment, e.g. its steady-state median successful responses/s; the default) or
`second` (every steady-state second as a sample; the paper's variant, kept for comparison).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats as scipy_stats

Unit = Literal["experiment", "second"]

# Kruskal-Wallis' chi-squared approximation is poor below this many values per group;
# suites can raise it (analysis.min_group_size).
MIN_GROUP_SIZE = 3

UNIT_LABELS: dict[str, str] = {
    "experiment": "experiments as the unit (one steady-state median per experiment)",
    "second": "seconds as the unit (paper's variant; autocorrelated, overstates significance)",
}


def _values(sample: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    array = np.asarray(sample, dtype=float)
    return array[~np.isnan(array)]


@dataclass(frozen=True)
class GroupTest:
    """The result of one Kruskal-Wallis H-test, or why it could not be run."""

    unit: str
    sizes: dict[str, int]  # group label -> number of values
    statistic: float | None
    p_value: float | None
    message: str = ""  # empty when the test ran

    @property
    def ran(self) -> bool:
        return self.p_value is not None

    @property
    def label(self) -> str:
        return f"Kruskal-Wallis H-test, {UNIT_LABELS[self.unit]}"


def group_size_problem(sizes: Mapping[str, int], unit: str, min_group_size: int) -> str:
    """Why groups of these sizes cannot be compared, or '' when they can."""
    if len(sizes) < 2:
        return f"needs at least 2 groups to compare, got {len(sizes)} ({', '.join(sizes) or 'none'})"
    small = {label: n for label, n in sizes.items() if n < min_group_size}
    if small:
        what = "experiments" if unit == "experiment" else "seconds"
        listed = ", ".join(f"{label}: {n}" for label, n in small.items())
        return (f"too few {what} per group ({listed}); each group needs at least {min_group_size}"
                f" - run more repetitions or lower analysis.min_group_size")
    return ""


def kruskal_wallis(groups: Mapping[str, Sequence[float] | np.ndarray | pd.Series], *,
                   unit: Unit = "experiment", min_group_size: int = MIN_GROUP_SIZE) -> GroupTest:
    """Kruskal-Wallis H-test (tie-corrected, as scipy) across labelled groups; NaNs are dropped."""
    samples = {label: _values(values) for label, values in groups.items()}
    sizes = {label: int(values.size) for label, values in samples.items()}
    problem = group_size_problem(sizes, unit, min_group_size)
    if problem:
        return GroupTest(unit, sizes, None, None, problem)
    pooled = np.concatenate(list(samples.values()))
    if np.all(pooled == pooled[0]):
        return GroupTest(unit, sizes, None, None, f"all {pooled.size} values are identical ({pooled[0]:g}); "
                                                  "nothing to rank")
    result = scipy_stats.kruskal(*samples.values())
    return GroupTest(unit, sizes, float(result.statistic), float(result.pvalue))


def dunn_holm(groups: Mapping[str, Sequence[float] | np.ndarray | pd.Series], *,
              unit: Unit = "experiment", min_group_size: int = MIN_GROUP_SIZE) -> pd.DataFrame:
    """Post-hoc Dunn tests for every pair of groups, p-values Holm-adjusted over all pairs.

    Returns a symmetric label x label frame of adjusted p-values (diagonal 1). Raises
    ValueError with the reason when the groups are too small to test.
    """
    samples = {label: _values(values) for label, values in groups.items()}
    problem = group_size_problem({label: v.size for label, v in samples.items()}, unit, min_group_size)
    if problem:
        raise ValueError(f"Dunn test not possible: {problem}")
    raw = scikit_posthocs.posthoc_dunn(list(samples.values())).to_numpy(dtype=float)
    # Holm over the pairs here, not through scikit-posthocs' p_adjust: that goes through
    # statsmodels, which runs a full gc.collect() per call (0.2 s each, minutes per report).
    upper = np.triu_indices(len(samples), k=1)
    adjusted = np.ones_like(raw)
    adjusted[upper] = np.array(holm(raw[upper].tolist()), dtype=float)
    adjusted.T[upper] = adjusted[upper]
    labels = list(samples)
    return pd.DataFrame(adjusted, index=labels, columns=labels)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjustment of a family of p-values (None entries are skipped and kept)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


def cliffs_delta(x: Sequence[float] | np.ndarray | pd.Series, y: Sequence[float] | np.ndarray | pd.Series) -> float:
    """Cliff's delta: P(X > Y) - P(X < Y), from -1 (all x below y) to 1 (all x above y).

    Counted with sorting (O((n + m) log m)), so millions of per-second values are fine.
    """
    xs, ys = _values(x), np.sort(_values(y))
    if xs.size == 0 or ys.size == 0:
        raise ValueError(f"Cliff's delta needs values in both samples (got {xs.size} and {ys.size})")
    below = np.searchsorted(ys, xs, side="left")  # y < x
    not_above = np.searchsorted(ys, xs, side="right")  # y <= x
    greater = below.sum()
    less = (ys.size - not_above).sum()
    return float((greater - less) / (xs.size * ys.size))


def delta_magnitude(delta: float) -> str:
    """Romano et al. (2006) thresholds for |delta|."""
    size = abs(delta)
    if size < 0.147:
        return "negligible"
    if size < 0.33:
        return "small"
    if size < 0.474:
        return "medium"
    return "large"


@dataclass(frozen=True)
class MedianInterval:
    """A distribution-free interval of a median: [x(k), x(n+1-k)] of the sorted values, with its exact coverage.

    low/high are None when n is too small for `confidence`: then even the whole range [min, max] covers the
    median less often than asked (`coverage` is the range's), and no interval is claimed."""

    median: float
    low: float | None
    high: float | None
    n: int
    confidence: float  # the coverage asked for
    coverage: float  # the exact coverage of [low, high] (of [min, max] when there is no interval)

    @property
    def relative_width(self) -> float | None:
        """(high - low) / |median|; None when there is no interval or the median is 0."""
        if self.low is None or self.high is None or self.median == 0:
            return None
        return (self.high - self.low) / abs(self.median)

    @property
    def text(self) -> str:
        """'[a, b] (96.9 %)', or why there is no interval."""
        if self.low is None or self.high is None:
            return (f"no {self.confidence:.0%} interval: n = {self.n}, and even the full range covers the median "
                    f"only {self.coverage:.1%} of the time; {min_n_for(self.confidence)} values are needed")
        return f"[{self.low:.4g}, {self.high:.4g}] ({self.coverage:.1%})"


def _range_coverage(n: int, k: int) -> float:
    """P(x(k) <= median < x(n+1-k)) for any continuous distribution: 1 - 2 P(Binomial(n, 1/2) <= k - 1)."""
    return float(1 - 2 * scipy_stats.binom.cdf(k - 1, n, 0.5))


def min_n_for(confidence: float) -> int:
    """The fewest values whose full range covers the median with at least `confidence`."""
    n = 1
    while _range_coverage(n, 1) < confidence:
        n += 1
    return n


def median_interval(values: Sequence[float] | np.ndarray | pd.Series, *,
                    confidence: float = 0.95) -> MedianInterval:
    """The narrowest order-statistic interval of the median with exact coverage >= `confidence`.

    Exact for any continuous distribution (the binomial argument; no resampling). A percentile bootstrap of a
    median at n <= 5 only ever returns the sample range and calls it 95 %; here n < min_n_for(confidence)
    (6 for 95 %) gives no interval, with the range's real coverage (50 % at n = 2) in `coverage`."""
    sample = np.sort(_values(values))
    n = int(sample.size)
    if n == 0:
        raise ValueError("an interval of the median needs at least one value")
    median = float(np.median(sample))
    best: tuple[int, float] | None = None
    for k in range(1, (n + 1) // 2 + 1):
        coverage = _range_coverage(n, k)
        if coverage < confidence:
            break
        best = (k, coverage)
    if best is None:
        return MedianInterval(median, None, None, n, confidence, _range_coverage(n, 1) if n > 1 else 0.0)
    k, coverage = best
    return MedianInterval(median, float(sample[k - 1]), float(sample[n - k]), n, confidence, coverage)


@dataclass(frozen=True)
class RepetitionVerdict:
    """Do the repetitions so far pin a scenario's median to the target relative CI width?"""

    n: int
    interval: MedianInterval | None
    target: float
    pinned: bool
    more_needed: int | None  # None when it cannot be estimated (see message)
    message: str


def repetitions_verdict(values: Sequence[float] | np.ndarray | pd.Series, *, target_relative_width: float = 0.1,
                        confidence: float = 0.95, min_n: int = MIN_GROUP_SIZE) -> RepetitionVerdict:
    """Judge one scenario's per-experiment values (e.g. median successful responses/s).

    The estimate of further repetitions assumes the interval narrows as 1/sqrt(n):
    n_needed = ceil(n * (width / target)^2). It is a planning figure, not a guarantee.
    """
    sample = _values(values)
    n = int(sample.size)
    if n < min_n:
        why = f"; {median_interval(sample, confidence=confidence).text}" if n else ""
        return RepetitionVerdict(n, None, target_relative_width, False, None,
                                 f"{n} finished experiment(s); at least {min_n} are needed{why}")
    interval = median_interval(sample, confidence=confidence)
    if interval.low is None:
        needed = min_n_for(confidence)
        return RepetitionVerdict(n, interval, target_relative_width, False, needed - n,
                                 f"{interval.text}; at least {needed - n} more repetition(s) before an interval exists")
    width = interval.relative_width
    if width is None:
        return RepetitionVerdict(n, interval, target_relative_width, False, None,
                                 "median is 0, so a relative interval width is undefined")
    if width <= target_relative_width:
        return RepetitionVerdict(n, interval, target_relative_width, True, 0,
                                 f"relative CI width {width:.1%} <= target {target_relative_width:.0%}")
    needed = math.ceil(n * (width / target_relative_width) ** 2)
    return RepetitionVerdict(n, interval, target_relative_width, False, needed - n,
                             f"relative CI width {width:.1%} > target {target_relative_width:.0%}; "
                             f"about {needed - n} more repetition(s) needed")


@cache
def _rank_sum_cdf(n: int, m: int) -> tuple[float, ...]:
    """P(U <= u), u = 0..n*m, for the Mann-Whitney U of samples of n and m values under no difference.

    The counts are the coefficients of the Gaussian binomial [n+m choose n](q), built with exact integers
    as prod_{i=1..n} (1 - q^(m+i)) / (1 - q^i) modulo q^(n*m+1)."""
    size = n * m + 1
    coefficients = [1] + [0] * (size - 1)
    for i in range(1, n + 1):
        step = m + i
        for u in range(size - 1, step - 1, -1):
            coefficients[u] -= coefficients[u - step]
        for u in range(i, size):
            coefficients[u] += coefficients[u - i]
    total = math.comb(n + m, n)
    running, cdf = 0, []
    for count in coefficients:
        running += count
        cdf.append(running / total)
    return tuple(cdf)


@dataclass(frozen=True)
class ShiftInterval:
    """A distribution-free interval of the shift between two samples (y - x), with its exact coverage.

    low/high are None when the samples are too small for `confidence`: even the widest interval,
    [min(y - x), max(y - x)] over all pairs, covers the shift less often than asked (`coverage` is its)."""

    low: float | None
    high: float | None
    n_x: int
    n_y: int
    confidence: float
    coverage: float


def shift_interval(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                   confidence: float = 0.95) -> ShiftInterval:
    """The Moses (Bauer 1972) interval of the location shift of y against x, from the Mann-Whitney test.

    The sorted pairwise differences y_j - x_i give [d(k), d(nm+1-k)], k the largest with exact coverage
    1 - 2 P(U <= k - 1) >= confidence; exact when y is distributed as x + shift (continuous values)."""
    xs, ys = _values(x), _values(y)
    n, m = int(xs.size), int(ys.size)
    if n == 0 or m == 0:
        raise ValueError(f"a shift interval needs values in both samples (got {n} and {m})")
    cdf = _rank_sum_cdf(min(n, m), max(n, m))  # U's distribution is symmetric in n and m
    best: tuple[int, float] | None = None
    for k in range(1, (n * m + 1) // 2 + 1):
        coverage = 1 - 2 * cdf[k - 1]
        if coverage < confidence:
            break
        best = (k, coverage)
    if best is None:
        return ShiftInterval(None, None, n, m, confidence, 1 - 2 * cdf[0])
    k, coverage = best
    differences = np.sort(np.subtract.outer(ys, xs).ravel())
    return ShiftInterval(float(differences[k - 1]), float(differences[n * m - k]), n, m, confidence, coverage)
