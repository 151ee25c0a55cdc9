"""Steady-state windows (MSER-5 and configured) and per-experiment summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubexp.analysis import steady


def ramp_then_flat(seconds: int = 300, ramp: int = 30, level: float = 100.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = level + rng.normal(0, 3, seconds)
    values[:ramp] = np.linspace(0, level, ramp, endpoint=False)
    return values


def test_mser_finds_the_end_of_a_ramp() -> None:
    dropped = [steady.mser_truncation(ramp_then_flat(seed=seed)) for seed in range(10)]
    assert all(d % 5 == 0 for d in dropped)
    assert all(25 <= d <= 60 for d in dropped)  # the ramp goes; noise may cost a few batches more
    assert 30 <= float(np.median(dropped)) <= 40


def test_mser_drops_nothing_from_a_stationary_series() -> None:
    rng = np.random.default_rng(1)
    assert steady.mser_truncation(100 + rng.normal(0, 3, 300)) <= 15


def test_mser_by_hand_on_batch_means() -> None:
    # Batch means 0, 10, 10, 10, 10, 10: dropping the first batch leaves zero variance.
    series = np.repeat([0.0, 10, 10, 10, 10, 10], 5)
    assert steady.mser_truncation(series) == 5
    assert steady.mser_truncation(np.arange(12.0)) == 0  # too short to judge


def test_window_detects_warmup_and_partial_last_second() -> None:
    values = ramp_then_flat(seed=4)
    values[-3:] = [30, 10, 2]  # load stopping
    window = steady.steady_window(np.arange(300), values)
    assert 20 <= window.start_s <= 40
    assert 280 <= window.end_s <= 297
    assert (window.warmup_method, window.cooldown_method) == ("mser-5", "mser-5")


def test_configured_trims_override_detection() -> None:
    window = steady.steady_window(np.arange(300), ramp_then_flat(), warmup_s=60, cooldown_s=10)
    assert (window.start_s, window.end_s, window.seconds) == (60, 290, 230)
    assert window.warmup_method == window.cooldown_method == "configured"
    mixed = steady.steady_window(np.arange(300), ramp_then_flat(), warmup_s=0)
    assert mixed.start_s == 0 and mixed.warmup_method == "configured" and mixed.cooldown_method == "mser-5"


def test_configured_trims_longer_than_the_data_give_an_empty_window() -> None:
    window = steady.steady_window(np.arange(20), np.ones(20), warmup_s=15, cooldown_s=10)
    assert window.end_s == window.start_s and window.seconds == 0


def test_duration_bounds_the_experiment() -> None:
    # Rows after the load's end are ignored; seconds missing before it count as zero successes.
    t = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    window = steady.steady_window(t, np.ones(12), warmup_s=2, cooldown_s=1, duration_s=10)
    assert (window.start_s, window.end_s) == (2, 9)
    late = steady.steady_window(np.array([5, 6]), np.ones(2), warmup_s=0, cooldown_s=0, duration_s=10)
    assert (late.start_s, late.end_s) == (0, 10)


def seconds_frame() -> pd.DataFrame:
    rows = []
    for experiment_id, level in (("e1", 100.0), ("e2", 50.0)):
        for t, value in enumerate(ramp_then_flat(120, 20, level)):
            if experiment_id == "e2" and t in (60, 61):
                continue  # an outage: no request completed in these seconds
            successes = round(value)
            rows.append({"experiment_id": experiment_id, "t": t, "requests": successes + 1, "successes": successes,
                         "failures": 1, "elapsed_mean_ms": 50.0 if t % 2 else 70.0})
    return pd.DataFrame(rows)


def test_windows_trim_and_fill_outage_seconds_with_zeros() -> None:
    seconds = seconds_frame()
    windows = steady.steady_windows(seconds, warmup_s=30, cooldown_s=5)
    assert windows.set_index("experiment_id")[["window_start_s", "window_end_s", "seconds"]].to_dict("index") == {
        "e1": {"window_start_s": 30, "window_end_s": 115, "seconds": 85},
        "e2": {"window_start_s": 30, "window_end_s": 115, "seconds": 85}}
    kept = steady.trim(seconds, windows)
    assert len(kept) == 170
    outage = kept[(kept["experiment_id"] == "e2") & kept["t"].isin([60, 61])]
    assert outage["successes"].tolist() == [0, 0] and outage["requests"].tolist() == [0, 0]
    assert outage["elapsed_mean_ms"].isna().all()
    assert not outage["recorded"].any() and kept["recorded"].sum() == 168


def test_summarize_by_hand() -> None:
    steady_rows = pd.DataFrame({
        "experiment_id": ["a"] * 4,
        "t": [10, 11, 12, 13],
        "requests": [10, 30, 0, 20],
        "successes": [8, 30, 0, 20],
        "failures": [2, 0, 0, 0],
        "elapsed_mean_ms": [100.0, 20.0, np.nan, 50.0],
        "recorded": [True, True, False, True],
    })
    row = steady.summarize(steady_rows).set_index("experiment_id").loc["a"]
    assert row["seconds"] == 4 and row["seconds_recorded"] == 3
    assert row["successes_median"] == 14
    assert row["successes_mean"] == pytest.approx(14.5)
    assert row["zero_success_seconds"] == 1
    assert row["elapsed_mean_ms"] == pytest.approx((100 * 10 + 20 * 30 + 50 * 20) / 60)
    assert row["failure_share"] == pytest.approx(0.5 / 15)


def test_trim_takes_categorical_ids_and_skips_empty_or_unknown_windows() -> None:
    seconds = pd.DataFrame({"experiment_id": pd.Categorical(["a"] * 6 + ["b"] * 3 + ["c"] * 2),
                            "t": [0, 1, 2, 3, 5, 6, 0, 1, 2, 0, 1], "successes": np.arange(11),
                            "requests": np.arange(11), "elapsed_mean_ms": np.linspace(1, 2, 11)})
    windows = pd.DataFrame({"experiment_id": ["a", "b"], "window_start_s": [2, 0], "window_end_s": [6, 0],
                            "seconds": [4, 0], "warmup_method": "configured", "cooldown_method": "configured"})
    kept = steady.trim(seconds, windows)
    assert kept["experiment_id"].astype(str).tolist() == ["a"] * 4
    assert kept["t"].tolist() == [2, 3, 4, 5]
    assert kept["successes"].tolist() == [2, 3, 0, 4]  # t=4 had no row
    assert kept["recorded"].tolist() == [True, True, False, True]
    assert np.isnan(kept["elapsed_mean_ms"].iloc[2])


def test_windows_from_categorical_ids_in_any_row_order() -> None:
    shuffled = seconds_frame().sample(frac=1, random_state=3)
    shuffled["experiment_id"] = shuffled["experiment_id"].astype("category")
    windows = steady.steady_windows(shuffled, warmup_s=30, cooldown_s=5).set_index("experiment_id")
    assert windows.loc["e2", "seconds"] == 85
    detected = steady.steady_windows(shuffled)
    ordered = steady.steady_windows(seconds_frame())
    assert detected.set_index("experiment_id").sort_index().equals(ordered.set_index("experiment_id").sort_index())
