"""SLOs (suite key `slo`): named bounds on per-experiment figures, and the verdict over a scenario's experiments.

Each finished experiment gets one value per SLO, computed from the store over the suite's
steady-state window (experiment_aggregate: analysis.warmup_s <= t < duration_s - analysis.cooldown_s),
except elapsed_p99_ms: the exact p99 of every successful request of the experiment (load_experiment,
computed from the raw JTL at collect; None for experiments collected before it was stored). Values are
kept in `slo_value` with the bound they were checked against. An SLO never decides whether an
experiment is finished: finalize writes the values after the experiment is finished.

The verdict for a scenario and an SLO uses experiments as the unit: the median of the scenario's
per-experiment values with its exact order-statistic interval (kubexp.analysis.stats.median_interval,
at the suite's analysis.confidence). The SLO is *met* when the whole interval lies within the bounds,
*missed* when it lies wholly outside, *undecided* when it straddles a bound or there are too few
experiments for an interval (at 95 % that takes 6).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from kubexp.analysis import stats
from kubexp.suite import SLO_FIGURES

log = logging.getLogger(__name__)

Outcome = Literal["met", "missed", "undecided"]
OOM_KINDS = ("OOMKilled", "OOMKilling", "SystemOOM")

# Figures read from the experiment's steady-state aggregate (alias a) or its exact whole-load statistics (w).
_AGGREGATE_FIGURES = {
    "successes_per_s_median": "a.successes_per_s_median",
    "elapsed_p99_ms": "w.success_elapsed_p99_ms",
    "failure_share": "a.failures::double precision / nullif(a.requests, 0)",
}


def figure_values(conn: psycopg.Connection, experiment_ids: Sequence[str], figure: str,
                  query: str | None = None) -> dict[str, tuple[int, float | None]]:
    """experiment id -> (finishing attempt, value of `figure`) for the finished ones among `experiment_ids`."""
    ids = [str(e) for e in experiment_ids]
    if figure in _AGGREGATE_FIGURES:
        sql = (f"SELECT e.id::text, e.finished_attempt_id, {_AGGREGATE_FIGURES[figure]} FROM experiment e "
               "LEFT JOIN experiment_aggregate a ON a.experiment_id = e.id "
               "LEFT JOIN load_experiment w ON w.experiment_id = e.id AND w.attempt_id = e.finished_attempt_id "
               "WHERE e.id = ANY(%s::uuid[]) AND e.status = 'finished'")
        params: tuple[Any, ...] = (ids,)
    elif figure == "oom_kills":
        sql = ("SELECT e.id::text, e.finished_attempt_id, (SELECT count(*) FROM platform_event p "
               "WHERE p.experiment_id = e.id AND p.attempt_id = e.finished_attempt_id AND p.kind = ANY(%s))::float8 "
               "FROM experiment e WHERE e.id = ANY(%s::uuid[]) AND e.status = 'finished'")
        params = (list(OOM_KINDS), ids)
    elif figure == "series_mean":
        sql = ("SELECT e.id::text, e.finished_attempt_id, (SELECT avg(p.value) FROM metric_series s "
               "CROSS JOIN LATERAL unnest(s.t, s.value) AS p (t, value) "
               "WHERE s.experiment_id = e.id AND s.attempt_id = e.finished_attempt_id AND s.name = %s "
               "AND p.t >= a.window_start_s AND p.t < a.window_end_s) "
               "FROM experiment e LEFT JOIN experiment_aggregate a ON a.experiment_id = e.id "
               "WHERE e.id = ANY(%s::uuid[]) AND e.status = 'finished'")
        params = (query, ids)
    else:
        raise ValueError(f"unknown SLO figure {figure!r}; allowed: {', '.join(SLO_FIGURES)}")
    return {row[0]: (int(row[1]), None if row[2] is None else float(row[2]))
            for row in conn.execute(sql, params).fetchall()}


def within(value: float, spec: Mapping[str, Any]) -> bool:
    return ("min" not in spec or value >= spec["min"]) and ("max" not in spec or value <= spec["max"])


def bound_text(spec: Mapping[str, Any]) -> str:
    parts = ([f">= {spec['min']:g}"] if "min" in spec else []) + ([f"<= {spec['max']:g}"] if "max" in spec else [])
    return " and ".join(parts)


def figure_text(spec: Mapping[str, Any]) -> str:
    return f"series_mean({spec['query']})" if spec["figure"] == "series_mean" else str(spec["figure"])


def evaluate(conn: psycopg.Connection, slos: Mapping[str, Mapping[str, Any]], experiment_ids: Sequence[str]) -> int:
    """Compute and store every SLO's value for the finished experiments among `experiment_ids`.

    Replaces earlier values of the same experiment and SLO (a changed figure or bound, another
    finishing attempt); returns the number of rows written."""
    rows = []
    for name, spec in slos.items():
        for experiment_id, (attempt_id, value) in figure_values(conn, experiment_ids, spec["figure"],
                                                                  spec.get("query")).items():
            rows.append((experiment_id, attempt_id, name, spec["figure"], spec.get("query"), value, spec.get("min"),
                         spec.get("max"), None if value is None else within(value, spec)))
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO slo_value (experiment_id, attempt_id, slo, figure, query, value, bound_min, bound_max, met)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (experiment_id, slo) DO UPDATE SET
                attempt_id = excluded.attempt_id, figure = excluded.figure, query = excluded.query,
                value = excluded.value, bound_min = excluded.bound_min, bound_max = excluded.bound_max,
                met = excluded.met, evaluated_at = now()
            """, rows)
    return len(rows)


def evaluate_suite(conn: psycopg.Connection, suite: str) -> int:
    """(Re)compute the SLO values of every finished experiment of a suite, with the SLOs it was last loaded with."""
    slos = suite_slos(conn, suite)
    if not slos:
        return 0
    ids = [row[0] for row in conn.execute(
        "SELECT id::text FROM experiment WHERE suite = %s AND status = 'finished'", (suite,)).fetchall()]
    return evaluate(conn, slos, ids)


def suite_slos(conn: psycopg.Connection, suite: str) -> dict[str, dict[str, Any]]:
    """The `slo` section of the suite as last loaded into the store."""
    row = conn.execute("SELECT definition -> 'slo' FROM suite WHERE name = %s", (suite,)).fetchone()
    return dict(row[0] or {}) if row else {}


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    interval: stats.MedianInterval | None
    reason: str


def judge(values: Sequence[float], spec: Mapping[str, Any], confidence: float) -> Judgement:
    """Met, missed or undecided for one scenario's per-experiment values of an SLO's figure."""
    bounds = bound_text(spec)
    if not values:
        return Judgement("undecided", None, f"no finished experiment with a value; bound {bounds}")
    interval = stats.median_interval(values, confidence=confidence)
    if interval.low is None or interval.high is None:
        return Judgement("undecided", interval, f"median {interval.median:.4g}, bound {bounds}: {interval.text}")
    where = f"median {interval.median:.4g}, interval {interval.text} over {interval.n} experiments, bound {bounds}"
    if within(interval.low, spec) and within(interval.high, spec):
        return Judgement("met", interval, f"{where}: the whole interval is within the bound")
    if ("min" in spec and interval.high < spec["min"]) or ("max" in spec and interval.low > spec["max"]):
        return Judgement("missed", interval, f"{where}: the whole interval is outside the bound")
    return Judgement("undecided", interval, f"{where}: the interval straddles the bound")


@dataclass(frozen=True)
class SloCase:
    """One scenario x SLO of a verdict."""

    scenario_index: int
    scenario_id: str
    parameters: dict[str, Any]  # the suite's matrix parameters of the scenario
    slo: str
    figure: str
    bound: str
    values: list[float]
    judgement: Judgement

    @property
    def outcome(self) -> Outcome:
        return self.judgement.outcome

    @property
    def scenario_label(self) -> str:
        varied = ", ".join(f"{key}={value}" for key, value in self.parameters.items())
        return f"scenario {self.scenario_index} ({varied or self.scenario_id})"

    def to_json(self) -> dict[str, Any]:
        interval = self.judgement.interval
        return {"scenario_index": self.scenario_index, "scenario_id": self.scenario_id,
                "parameters": self.parameters, "slo": self.slo, "figure": self.figure, "bound": self.bound,
                "outcome": self.outcome, "experiments": len(self.values), "values": self.values,
                "median": interval.median if interval else None,
                "ci_low": interval.low if interval else None, "ci_high": interval.high if interval else None,
                "coverage": interval.coverage if interval and interval.low is not None else None,
                "reason": self.judgement.reason}


def verdict(conn: psycopg.Connection, suite: str) -> list[SloCase]:
    """Every active scenario x SLO of the suite judged from the stored values (write them with evaluate_suite)."""
    row = conn.execute("SELECT definition FROM suite WHERE name = %s", (suite,)).fetchone()
    if row is None:
        raise LookupError(f"suite {suite!r} is not in the store; load it first (`kubexp suite load FILE`)")
    definition = row[0] or {}
    slos: dict[str, dict[str, Any]] = dict(definition.get("slo") or {})
    if not slos:
        return []
    confidence = float((definition.get("analysis") or {}).get("confidence", 0.95))
    matrix = list(definition.get("matrix") or {})
    scenarios = conn.execute(
        "SELECT ss.scenario_id, ss.position, sc.params FROM suite_scenario ss "
        "JOIN scenario sc ON sc.id = ss.scenario_id WHERE ss.suite = %s AND ss.active ORDER BY ss.position",
        (suite,)).fetchall()
    stored = conn.execute(
        "SELECT e.scenario_id, v.slo, v.figure, v.query, v.value FROM slo_value v "
        "JOIN experiment e ON e.id = v.experiment_id AND e.finished_attempt_id = v.attempt_id "
        "WHERE e.suite = %s AND e.status = 'finished' AND v.value IS NOT NULL ORDER BY e.repetition",
        (suite,)).fetchall()
    values: dict[tuple[str, str], list[float]] = {}
    for scenario_id, name, figure, query, value in stored:
        spec = slos.get(name)
        if spec is not None and spec["figure"] == figure and spec.get("query") == query:
            values.setdefault((scenario_id, name), []).append(float(value))
    cases = []
    for scenario_id, position, params in scenarios:
        for name, spec in slos.items():
            found = values.get((scenario_id, name), [])
            cases.append(SloCase(int(position), scenario_id, {key: params.get(key) for key in matrix}, name,
                                 figure_text(spec), bound_text(spec), found, judge(found, spec, confidence)))
    return cases
