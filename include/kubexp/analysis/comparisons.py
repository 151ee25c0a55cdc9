"""Table 1-style comparisons: does one parameter (etcd storage, mesh, pods, ...) change the outcome?

For a factor, each row holds every other varying parameter fixed (as the paper's Table 1
holds pods and workers fixed and compares RAM disk with network disk), plus one row pooled
over all of them (as the paper's section 6.1 pools istio against native). Each row gives:
- Kruskal-Wallis with experiments as the unit (each experiment's steady-state median
  successful responses/s; the default and the basis of `significant`), its p-value
  Holm-adjusted over the table's rows;
- the paper's per-second variant (every steady-state second a sample), labelled as such;
- Cliff's delta between the two levels (two-level factors) or the Dunn-Holm pairs that
  differ (more levels), and bootstrap CIs of each level's median.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from kubexp.analysis import stats
from kubexp.analysis.dataset import DEFAULT_SETTINGS, AnalysisSettings

OUTCOME = "successes_median"  # per experiment: steady-state median successful responses/s
POOLED = "(pooled)"


def _level_groups(frame: pd.DataFrame, factor: str, column: str, levels: Sequence[Any]) -> dict[str, np.ndarray]:
    return {str(level): frame.loc[frame[factor] == level, column].to_numpy(dtype=float) for level in levels}


def compare_factor(per_experiment: pd.DataFrame, steady: pd.DataFrame, factor: str, *, within: Sequence[str],
                   settings: AnalysisSettings = DEFAULT_SETTINGS, pooled_row: bool = True) -> pd.DataFrame:
    """One row per combination of `within` (+ a pooled row): the comparison of `factor`'s levels."""
    levels = sorted(per_experiment[factor].dropna().unique())
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
    return table


def _row(values: dict[str, Any], group: pd.DataFrame, seconds: pd.DataFrame, factor: str, levels: Sequence[Any],
         settings: AnalysisSettings) -> dict[str, Any]:
    by_experiment = _level_groups(group, factor, OUTCOME, levels)
    by_second = _level_groups(seconds, factor, "successes", levels)
    row: dict[str, Any] = dict(values)
    for level, sample in by_experiment.items():
        row[f"n[{level}]"] = sample.size
        if sample.size:
            interval = stats.bootstrap_median(sample, confidence=settings.confidence,
                                              resamples=settings.bootstrap_resamples, seed=settings.seed)
            row[f"median[{level}]"] = interval.median
            row[f"ci[{level}]"] = (interval.low, interval.high)
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
    row["dunn_pairs"] = _dunn_pairs(by_experiment, settings) if len(names) > 2 and test.ran else ""
    return row


def _dunn_pairs(groups: dict[str, np.ndarray], settings: AnalysisSettings) -> str:
    """The pairs Dunn-Holm finds different, e.g. '1<>10 (p=0.003), 2<>10 (p=0.04)', or 'none'."""
    matrix = stats.dunn_holm(groups, min_group_size=settings.min_group_size)
    labels = list(matrix.index)
    found = [f"{a}<>{b} (p={matrix.loc[a, b]:.2g})" for i, a in enumerate(labels) for b in labels[i + 1:]
             if matrix.loc[a, b] < settings.alpha]
    return ", ".join(found) if found else "none"


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
                                            confidence=settings.confidence, min_n=settings.min_group_size,
                                            seed=settings.seed)
        interval = verdict.interval
        rows.append({
            "scenario_index": index, "scenario_id": scenario_id,
            **{p: group[p].iloc[0] for p in parameters},
            "finished": verdict.n, "planned": len(group),
            "median": interval.median if interval else np.nan,
            "ci_low": interval.low if interval else np.nan, "ci_high": interval.high if interval else np.nan,
            "relative_width": interval.relative_width if interval and interval.relative_width is not None else np.nan,
            "pinned": verdict.pinned, "more_needed": verdict.more_needed, "verdict": verdict.message,
        })
    return pd.DataFrame(rows).sort_values("scenario_index").reset_index(drop=True)
