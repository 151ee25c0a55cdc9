"""Table 1-style comparisons: does one parameter (etcd storage, mesh, pods, ...) change the outcome?

For a factor, each row holds every other varying parameter fixed (as the paper's Table 1
holds pods and workers fixed and compares RAM disk with network disk), plus one row pooled
over all of them (as the paper's section 6.1 pools istio against native). Each row gives:
- Kruskal-Wallis with experiments as the unit (each experiment's steady-state median
  successful responses/s; the default and the basis of `significant`), its p-value
  Holm-adjusted over the table's rows;
- the paper's per-second variant (every steady-state second a sample), labelled as such;
- the effect size, Cliff's delta: between the two levels of a two-level factor; for more
  levels, for every pair of levels, beside that pair's Dunn test p-value (Holm-adjusted over
  the row's pairs; `pairwise` lists them in long form);
- each level's median with its exact order-statistic interval (none when n is too small for one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from kubexp.analysis import stats
from kubexp.analysis.dataset import DEFAULT_SETTINGS, AnalysisSettings

OUTCOME = "successes_median"  # per experiment: steady-state median successful responses/s
POOLED = "(pooled)"
NULL_LEVEL = "null"


def _level_groups(frame: pd.DataFrame, factor: str, column: str, levels: Sequence[Any]) -> dict[str, np.ndarray]:
    return {str(level): frame.loc[frame[factor] == level, column].to_numpy(dtype=float) for level in levels}


def named_nulls(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frame` with missing parameter values replaced by the level name "null" (arrival_rate_per_s: null is the
    closed loop, a level like any other: it must be compared and shown, never dropped)."""
    missing = [c for c in columns if c in frame and frame[c].isna().any()]
    if not missing:
        return frame
    frame = frame.copy()
    for column in missing:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), NULL_LEVEL)
    return frame


def _level_order(value: Any) -> tuple[int, Any]:
    return (1, str(value)) if isinstance(value, str) else (0, value)


def compare_factor(per_experiment: pd.DataFrame, steady: pd.DataFrame, factor: str, *, within: Sequence[str],
                   settings: AnalysisSettings = DEFAULT_SETTINGS, pooled_row: bool = True) -> pd.DataFrame:
    """One row per combination of `within` (+ a pooled row): the comparison of `factor`'s levels."""
    per_experiment = named_nulls(per_experiment, [factor, *within])
    steady = named_nulls(steady, [factor, *within])
    levels = sorted(per_experiment[factor].unique(), key=_level_order)
    steady = steady[[*dict.fromkeys([*within, factor, "successes"])]]  # rows are taken per table row: keep them narrow
    combos: list[tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]] = []
    if within:
        # One pass over the (large) per-second frame instead of one mask per row.
        positions = steady.groupby(list(within), sort=False).indices  # scalar keys for one column
        for key, group in per_experiment.groupby(list(within), sort=True):
            lookup = key if len(within) > 1 else key[0]
            seconds = steady.iloc[positions.get(lookup, np.empty(0, dtype=int))]
            combos.append((dict(zip(within, key, strict=True)), group, seconds))
    if pooled_row or not within:
        combos.append(({name: POOLED for name in within}, per_experiment, steady))
    rows = [_row(values, group, seconds, factor, levels, settings) for values, group, seconds in combos]
    table = pd.DataFrame(rows)
    adjusted = stats.holm([None if pd.isna(p) else float(p) for p in table["p_experiments"]])
    table.insert(table.columns.get_loc("p_experiments") + 1, "p_experiments_holm",
                 [np.nan if p is None else p for p in adjusted])
    table["significant"] = table["p_experiments_holm"] < settings.alpha
    if len(levels) > 2:  # post-hoc pairs only where the row's own test says the levels differ at all
        table.loc[~table["significant"] & table["p_experiments"].notna(), "dunn_pairs"] = \
            "not tested: Kruskal-Wallis not significant"
    return table


def table1_grid(table: pd.DataFrame, columns: str = "mesh") -> pd.DataFrame:
    """A compare_factor table as the paper's Table 1: one row per combination of the other fixed parameters
    (pods x workers), one column per value of `columns` (native | istio), cells the row's p-values.

    Each cell holds (p_seconds, p_experiments_holm, significant): the paper's per-second p-value first. The pooled
    row is left out (it is not a cell of the grid); the long form stays in `table`."""
    within = within_columns(table)
    if columns not in within:
        raise ValueError(f"the table holds {', '.join(within) or 'nothing'} fixed, not {columns}")
    index = [w for w in within if w != columns]
    cells = table[table[columns] != POOLED]
    if not index:
        index = ["_all"]
        cells = cells.assign(_all="all")
    grid = cells.assign(cell=list(zip(cells["p_seconds"], cells["p_experiments_holm"], cells["significant"],
                                      strict=True)))
    return grid.pivot(index=index, columns=columns, values="cell").sort_index()


def _row(values: dict[str, Any], group: pd.DataFrame, seconds: pd.DataFrame, factor: str, levels: Sequence[Any],
         settings: AnalysisSettings) -> dict[str, Any]:
    by_experiment = _level_groups(group, factor, OUTCOME, levels)
    by_second = _level_groups(seconds, factor, "successes", levels)
    row: dict[str, Any] = dict(values)
    for level, sample in by_experiment.items():
        row[f"n[{level}]"] = sample.size
        if sample.size:
            interval = stats.median_interval(sample, confidence=settings.confidence)
            row[f"median[{level}]"] = interval.median
            row[f"ci[{level}]"] = interval
        else:
            row[f"median[{level}]"], row[f"ci[{level}]"] = np.nan, None
    test = stats.kruskal_wallis(by_experiment, unit="experiment", min_group_size=settings.min_group_size)
    paper = stats.kruskal_wallis(by_second, unit="second", min_group_size=settings.min_group_size)
    row.update(h_experiments=test.statistic, p_experiments=test.p_value, p_seconds=paper.p_value,
               h_seconds=paper.statistic, note=test.message or paper.message)
    names = [str(level) for level in levels]
    if len(names) == 2 and all(by_experiment[name].size for name in names):
        delta = stats.cliffs_delta(by_experiment[names[0]], by_experiment[names[1]])
        row.update(cliffs_delta=delta, magnitude=stats.delta_magnitude(delta))
    else:
        row.update(cliffs_delta=np.nan, magnitude="")
    pairs = _pairs(by_experiment, settings, dunn=test.ran) if len(names) > 2 else []
    row["pairs"] = pairs
    row["dunn_pairs"] = _differing(pairs, settings.alpha) if len(names) > 2 and test.ran else ""
    return row


@dataclass(frozen=True)
class Pair:
    """Two levels of a factor compared within one table row (experiments as the unit)."""

    a: str
    b: str
    n_a: int
    n_b: int
    cliffs_delta: float  # effect size, a against b; NaN when a level has no experiments
    magnitude: str
    p_dunn_holm: float  # Dunn test, Holm-adjusted over the row's pairs; NaN when it could not run

    @property
    def label(self) -> str:
        return f"{self.a}<>{self.b}"


def _pairs(groups: dict[str, np.ndarray], settings: AnalysisSettings, *, dunn: bool) -> list[Pair]:
    """Every pair of levels, in Dunn-Holm's order (a before b as the levels sort), with Cliff's delta."""
    labels = list(groups)
    matrix = stats.dunn_holm(groups, min_group_size=settings.min_group_size) if dunn else None
    pairs = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            x, y = groups[a], groups[b]
            delta = stats.cliffs_delta(x, y) if x.size and y.size else np.nan
            pairs.append(Pair(a, b, int(x.size), int(y.size), delta,
                              "" if np.isnan(delta) else stats.delta_magnitude(delta),
                              np.nan if matrix is None else float(matrix.loc[a, b])))
    return pairs


def _differing(pairs: Sequence[Pair], alpha: float) -> str:
    """The pairs Dunn-Holm finds different, e.g. '1<>10 (p=0.003, delta -1.00 large)', or 'none'."""
    found = [f"{p.label} (p={p.p_dunn_holm:.2g}, delta {p.cliffs_delta:.2f} {p.magnitude})" for p in pairs
             if p.p_dunn_holm < alpha]
    return ", ".join(found) if found else "none"


def within_columns(table: pd.DataFrame) -> list[str]:
    """The parameters a compare_factor table holds fixed per row (the columns before the first n[level])."""
    columns = list(table.columns)
    return columns[:next(i for i, c in enumerate(columns) if c.startswith("n["))]


def pairwise(table: pd.DataFrame) -> pd.DataFrame:
    """A compare_factor table's pairs in long form: the row's fixed parameters, then one row per pair of levels.

    Columns: the `within` parameters, a, b, n_a, n_b, cliffs_delta, magnitude, p_dunn_holm. Empty
    for two-level factors (their effect size is the table's own cliffs_delta).
    """
    within = within_columns(table)
    rows = [{**{w: row[w] for w in within}, **asdict(pair)} for _, row in table.iterrows() for pair in row["pairs"]]
    return pd.DataFrame(rows, columns=[*within, *Pair.__dataclass_fields__])


def comparisons(per_experiment: pd.DataFrame, steady: pd.DataFrame, parameters: Sequence[str],
                settings: AnalysisSettings = DEFAULT_SETTINGS) -> dict[str, pd.DataFrame]:
    """One comparison table per varying parameter, the others held fixed in each row."""
    return {factor: compare_factor(per_experiment, steady, factor,
                                   within=[p for p in parameters if p != factor], settings=settings)
            for factor in parameters}


def repetition_table(per_experiment: pd.DataFrame, experiments: pd.DataFrame, parameters: Sequence[str],
                     settings: AnalysisSettings = DEFAULT_SETTINGS) -> pd.DataFrame:
    """Per scenario: finished experiments, median successful responses/s with CI, pinned?, how many more."""
    rows = []
    for (scenario_id, index), group in experiments.groupby(["scenario_id", "scenario_index"], sort=False):
        values = per_experiment.loc[per_experiment["scenario_id"] == scenario_id, OUTCOME]
        verdict = stats.repetitions_verdict(values, target_relative_width=settings.target_relative_ci_width,
                                            confidence=settings.confidence, min_n=settings.min_group_size)
        interval = verdict.interval
        has_interval = interval is not None and interval.low is not None
        rows.append({
            "scenario_index": index, "scenario_id": scenario_id,
            **{p: group[p].iloc[0] for p in parameters},
            "finished": verdict.n, "planned": len(group),
            "median": interval.median if interval else np.nan,
            "ci_low": interval.low if interval and has_interval else np.nan,
            "ci_high": interval.high if interval and has_interval else np.nan,
            "coverage": interval.coverage if interval and has_interval else np.nan,
            "relative_width": interval.relative_width if interval and interval.relative_width is not None else np.nan,
            "pinned": verdict.pinned, "more_needed": verdict.more_needed, "verdict": verdict.message,
        })
    return pd.DataFrame(rows).sort_values("scenario_index").reset_index(drop=True)
