"""The queueing model's curves for Fig. 3: service time from the data, MVA from kubexp.queueing."""

from __future__ import annotations

import pandas as pd
import pytest

from kubexp import queueing
from kubexp.analysis.prediction import PREDICTION_COLUMNS, predict


def measured(pods: int, mesh: str, response_ms: list[float]) -> pd.DataFrame:
    workers = [2, 10, 20, 40]
    # all requests' mean response time pulled down by fast failures: the model must not take it as service time
    return pd.DataFrame({"pods": pods, "mesh": mesh, "workers": workers, "think_time_ms": 20.0,
                         "success_elapsed_mean_ms": response_ms, "elapsed_mean_ms": [r / 3 for r in response_ms],
                         "successes_median": [30.0, 120, 200, 250]})


def test_prediction_uses_the_lowest_response_time_per_group() -> None:
    frame = pd.concat([measured(20, "native", [63.0, 70, 95, 180]), measured(20, "istio", [90.0, 99, 150, 300])])
    curves = predict(frame)
    assert list(curves.columns) == PREDICTION_COLUMNS
    native = curves[curves["group"] == "mesh=native"]
    assert native["workers"].tolist() == list(range(1, 41))
    assert (native["service_ms"] == 63.0).all()
    expected = queueing.mva(40, 20.0, 63.0, 20)
    assert native["successes_per_s"].tolist() == pytest.approx([p.throughput for p in expected])
    assert native["response_time_ms"].tolist() == pytest.approx([p.response_time_ms for p in expected])
    assert (curves.loc[curves["group"] == "mesh=istio", "service_ms"] == 90.0).all()
    # One worker alone: X = 1 / (Z + S); far beyond saturation the plateau is J / S.
    assert native["successes_per_s"].iloc[0] == pytest.approx(1000 / (20 + 63))
    plateau = predict(measured(2, "native", [63.0, 70, 95, 180]))
    assert plateau["successes_per_s"].iloc[-1] == pytest.approx(2 * 1000 / 63, rel=1e-3)


def test_groups_without_response_times_are_skipped() -> None:
    frame = measured(5, "native", [float("nan")] * 4)
    assert predict(frame).empty
