"""Everything the report needs about one suite, loaded once: experiments, steady windows, summaries.

`load_suite_data(conn, "paper-etcd")` reads the store, decides each finished experiment's
steady-state window (suite.analysis.warmup_s / cooldown_s where set, MSER-5 otherwise),
and summarises the seconds inside it. The result's frames are the documented inputs of
kubexp.analysis.figures and kubexp.analysis.comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from kubexp.analysis import loaders, steady
from kubexp.analysis.figures import varying
from kubexp.analysis.stats import MIN_GROUP_SIZE
from kubexp.suite import check_section

# Parameters the figures facet by, kept on the per-second rows even when a suite does not vary them.
FIGURE_PARAMETERS = ("pods", "workers", "mesh", "etcd_storage")
# Columns the analysis reads from load_second (the rest stays in the store).
ANALYSIS_COLUMNS = ("requests", "successes", "failures", "elapsed_mean_ms", "success_elapsed_mean_ms")


@dataclass(frozen=True)
class AnalysisSettings:
    """suite.analysis, checked: every key is optional."""

    warmup_s: int | None = None  # None: detect per experiment with MSER-5
    cooldown_s: int | None = None
    min_group_size: int = MIN_GROUP_SIZE
    target_relative_ci_width: float = 0.10
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0

    @classmethod
    def from_mapping(cls, analysis: dict[str, Any], *, seed: int = 0, where: str = "suite") -> AnalysisSettings:
        """From a suite's `analysis` section, checked by its part of the suite schema (kubexp.suite): errors
        name the key and the allowed values."""
        check_section("analysis", analysis, where)
        return cls(**analysis, seed=seed)

    def window_description(self) -> str:
        def part(name: str, value: int | None, key: str) -> str:
            if value is None:
                return f"{name} detected per experiment by MSER-5 (suite sets no analysis.{key})"
            return f"{name} {value} s (suite analysis.{key})"
        return "; ".join((part("warm-up", self.warmup_s, "warmup_s"), part("cool-down", self.cooldown_s, "cooldown_s")))


DEFAULT_SETTINGS = AnalysisSettings()


@dataclass
class SuiteData:
    suite: dict[str, Any]  # the store's suite row (name, repetitions, definition, ...)
    settings: AnalysisSettings
    experiments: pd.DataFrame  # every experiment, finished or not (loaders.experiments)
    windows: pd.DataFrame  # steady.WINDOW_COLUMNS per finished experiment
    steady: pd.DataFrame  # per-second rows in the windows + scenario_id and parameters (categorical columns)
    per_experiment: pd.DataFrame  # steady.summarize + parameters, one row per finished experiment
    events: pd.DataFrame  # platform events of finished experiments
    parameters: list[str]  # the parameters the suite varies

    @property
    def finished(self) -> pd.DataFrame:
        return self.experiments[self.experiments["status"] == "finished"]


def load_suite_data(conn: psycopg.Connection, suite: str, *, settings: AnalysisSettings | None = None) -> SuiteData:
    record = loaders.suite_record(conn, suite)
    definition = record.get("definition") or {}
    if settings is None:
        settings = AnalysisSettings.from_mapping(dict(definition.get("analysis") or {}),
                                                 seed=int(record.get("seed") or 0), where=f"suite {suite}")
    stored = loaders.experiments(conn, suite)
    # Scenarios a reload dropped from the matrix keep their data in the store but leave the analysis.
    all_experiments = stored[stored["active"].astype(bool)] if not stored.empty else stored
    parameters = varying(all_experiments) if not all_experiments.empty else []
    finished = all_experiments[all_experiments["status"] == "finished"]
    # Without parameters: trim fills in missing seconds, the parameters are mapped onto its result below.
    seconds = loaders.load_seconds(conn, suite, columns=ANALYSIS_COLUMNS, parameters=False)
    seconds = seconds[seconds["experiment_id"].isin(finished["experiment_id"])]
    with_data = finished[finished["experiment_id"].isin(seconds["experiment_id"].unique())]
    durations = with_data.set_index("experiment_id")["duration_s"] if "duration_s" in with_data else None
    windows = steady.steady_windows(seconds, warmup_s=settings.warmup_s, cooldown_s=settings.cooldown_s,
                                    durations=durations)
    kept = steady.trim(seconds, windows)
    described = finished.set_index("experiment_id")
    # Categoricals: 1.7 M rows carry a handful of distinct values each, mapped once per experiment.
    kept["experiment_id"] = kept["experiment_id"].astype("category")
    for column in ["scenario_id", *dict.fromkeys([*FIGURE_PARAMETERS, *parameters])]:
        if column in described:
            kept[column] = kept["experiment_id"].map(described[column])
    per_experiment = steady.summarize(kept).merge(finished, on="experiment_id", how="left")
    return SuiteData(
        suite=record,
        settings=settings,
        experiments=all_experiments,
        windows=windows,
        steady=kept,
        per_experiment=per_experiment,
        events=loaders.platform_events(conn, suite),
        parameters=parameters,
    )
