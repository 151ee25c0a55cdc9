"""The regression gate: a candidate level of a matrix factor against its baseline, on every other combination.

Method (experiments as the unit): each finished experiment gives one value, its steady-state median
successful responses/s (`successes_per_s_median` of the store's experiment_aggregate). For a combination
of the other matrix parameters, the baseline scenario's values x and the candidate's values y are
compared on the log scale: the point estimate is the ratio of the medians, median(y) / median(x); the
interval is exp() of the Moses (Bauer 1972) distribution-free interval of the shift log y - log x
(kubexp.analysis.stats.shift_interval), at the suite's analysis.confidence. It is exact when the
candidate's values are the baseline's times a constant, whatever their distribution; the constant is
then the ratio of the medians. With margin m (default 5 %) and higher = better:

- worse: the whole interval is below 1 - m (slower by more than the margin);
- better: the whole interval is above 1 + m;
- equivalent: the whole interval is within [1 - m, 1 + m];
- inconclusive: otherwise, or too few experiments for an interval (at 95 % that takes 4 per level).

Error rates, per comparison, at confidence c (alpha = 1 - c): when the true ratio is within the margin,
"worse" and "better" each come out at most alpha/2 of the time; when it is outside the margin, "equivalent"
at most alpha/2. The seeded simulation in kubexp.analysis.simulation measures them (docs/ci.md).
Baseline and candidate experiments run interleaved by the suite's selection rule (fewest finished first,
seeded ties), so drift of the cluster hits both alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import psycopg

from kubexp.analysis import stats

Outcome = Literal["better", "worse", "equivalent", "inconclusive"]
FIGURE = "successes_per_s_median"
DEFAULT_MARGIN = 0.05
METHOD = ("Experiments as the unit: each finished experiment's steady-state median successful responses/s. Point "
          "estimate: median(candidate) / median(baseline). Interval: exp() of the Moses (Bauer 1972) distribution-"
          "free interval of the shift of the log values, exact coverage from the Mann-Whitney U distribution at the "
          "suite's analysis.confidence. worse: interval below 1 - margin; better: above 1 + margin; equivalent: "
          "within [1 - margin, 1 + margin]; inconclusive: otherwise. A true ratio within the margin comes out worse "
          "(or better) at most (1 - confidence) / 2 of the time; one outside the margin comes out equivalent at "
          "most (1 - confidence) / 2 of the time.")


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    ratio: float | None  # median(candidate) / median(baseline)
    low: float | None
    high: float | None
    coverage: float | None
    reason: str


def decide(baseline: Sequence[float], candidate: Sequence[float], *, margin: float = DEFAULT_MARGIN,
           confidence: float = 0.95) -> Decision:
    """Better, worse, equivalent or inconclusive for per-experiment values where higher is better."""
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(candidate, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return Decision("inconclusive", None, None, None, None,
                        f"no finished experiment with a value ({x.size} baseline, {y.size} candidate)")
    if (x <= 0).any() or (y <= 0).any():
        return Decision("inconclusive", None, None, None, None,
                        "a value is 0 or below; a ratio needs positive values (did an experiment serve nothing?)")
    ratio = float(np.median(y) / np.median(x))
    interval = stats.shift_interval(np.log(x), np.log(y), confidence=confidence)
    band = f"[{1 - margin:.3g}, {1 + margin:.3g}]"
    if interval.low is None or interval.high is None:
        return Decision("inconclusive", ratio, None, None, interval.coverage,
                        f"ratio {ratio:.3f}; {x.size} baseline and {y.size} candidate experiments give no "
                        f"{confidence:.0%} interval (the widest covers {interval.coverage:.1%})")
    low, high = math.exp(interval.low), math.exp(interval.high)
    where = (f"ratio {ratio:.3f}, {interval.coverage:.1%} interval [{low:.3f}, {high:.3f}] from {x.size} baseline "
             f"and {y.size} candidate experiments, margin {band}")
    if high < 1 - margin:
        return Decision("worse", ratio, low, high, interval.coverage, f"{where}: the interval is below the margin")
    if low > 1 + margin:
        return Decision("better", ratio, low, high, interval.coverage, f"{where}: the interval is above the margin")
    if low >= 1 - margin and high <= 1 + margin:
        return Decision("equivalent", ratio, low, high, interval.coverage,
                        f"{where}: the interval is within the margin")
    return Decision("inconclusive", ratio, low, high, interval.coverage, f"{where}: the interval crosses the margin")


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline on one combination of the other matrix parameters."""

    combination: dict[str, Any]
    baseline_scenario: str
    candidate_scenario: str
    baseline: list[float]
    candidate: list[float]
    decision: Decision

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def label(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.combination.items()) or "all"

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        return {"combination": self.combination, "baseline_scenario": self.baseline_scenario,
                "candidate_scenario": self.candidate_scenario, "baseline_values": self.baseline,
                "candidate_values": self.candidate, "outcome": d.outcome, "ratio": d.ratio, "ci_low": d.low,
                "ci_high": d.high, "coverage": d.coverage, "reason": d.reason}


class CompareError(ValueError):
    """The factor or its levels are not in the suite (the message lists what is)."""


def level_matches(value: Any, text: str) -> bool:
    """A matrix value against a level given on the command line (as YAML writes it: 500, 0.5, istio, null)."""
    if value is None:
        return text in ("null", "None", "~")
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    return str(value) == text or (isinstance(value, int | float) and _number(text) == value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def pairs(definition: Mapping[str, Any], scenarios: Sequence[tuple[str, dict[str, Any]]], factor: str,
          baseline: str, candidate: str) -> list[tuple[dict[str, Any], str, str]]:
    """(combination of the other matrix parameters, baseline scenario id, candidate scenario id) per combination.

    `scenarios`: (id, params) of the suite's active scenarios."""
    matrix: dict[str, list[Any]] = dict(definition.get("matrix") or {})
    name = definition.get("suite", "?")
    if factor not in matrix:
        raise CompareError(f"suite {name}: --factor {factor} is not a matrix parameter; allowed: "
                           f"{', '.join(matrix) or 'none (the matrix is empty)'}")
    levels = matrix[factor]
    for option, text in (("--baseline", baseline), ("--candidate", candidate)):
        if not any(level_matches(level, text) for level in levels):
            raise CompareError(f"suite {name}: {option} {text} is not a level of {factor}; allowed: "
                               f"{', '.join(str(level) for level in levels)}")
    others = [key for key in matrix if key != factor]
    found: dict[tuple[Any, ...], dict[str, str]] = {}
    for scenario_id, params in scenarios:
        key = tuple(params.get(other) for other in others)
        if level_matches(params.get(factor), baseline):
            found.setdefault(key, {})["baseline"] = scenario_id
        elif level_matches(params.get(factor), candidate):
            found.setdefault(key, {})["candidate"] = scenario_id
    return [(dict(zip(others, key, strict=True)), ids["baseline"], ids["candidate"])
            for key, ids in found.items() if "baseline" in ids and "candidate" in ids]


def compare(conn: psycopg.Connection, suite: str, factor: str, baseline: str, candidate: str, *,
            margin: float = DEFAULT_MARGIN) -> list[Comparison]:
    """Every combination's comparison, from the finished experiments' values in the store."""
    from kubexp.analysis.slo import figure_values

    row = conn.execute("SELECT definition FROM suite WHERE name = %s", (suite,)).fetchone()
    if row is None:
        raise CompareError(f"suite {suite!r} is not in the store; load it first (`kubexp suite load FILE`)")
    definition = dict(row[0] or {})
    confidence = float((definition.get("analysis") or {}).get("confidence", 0.95))
    scenarios = [(str(sid), dict(params)) for sid, params in conn.execute(
        "SELECT ss.scenario_id, sc.params FROM suite_scenario ss JOIN scenario sc ON sc.id = ss.scenario_id "
        "WHERE ss.suite = %s AND ss.active ORDER BY ss.position", (suite,)).fetchall()]
    experiments = conn.execute(
        "SELECT id::text, scenario_id FROM experiment WHERE suite = %s AND status = 'finished' ORDER BY repetition",
        (suite,)).fetchall()
    values = figure_values(conn, [e for e, _ in experiments], FIGURE)
    by_scenario: dict[str, list[float]] = {}
    for experiment_id, scenario_id in experiments:
        value = values.get(experiment_id, (0, None))[1]
        if value is not None:
            by_scenario.setdefault(scenario_id, []).append(value)
    result = []
    for combination, base_id, cand_id in pairs(definition, scenarios, factor, baseline, candidate):
        x, y = by_scenario.get(base_id, []), by_scenario.get(cand_id, [])
        result.append(Comparison(combination, base_id, cand_id, x, y,
                                 decide(x, y, margin=margin, confidence=confidence)))
    return result
