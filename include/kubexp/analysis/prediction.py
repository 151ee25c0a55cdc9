"""The queueing model's prediction for Fig. 3, with its service time estimated from the data.

Section 4.1 of the paper: at low load the response time is the service time, so the lowest
mean response time of successful requests measured in a group of scenarios (same pods, mesh, ...)
estimates it (a failure's elapsed, e.g. a 503 in 2 ms, is no service time).
With that, the think time and the pods as servers, kubexp.queueing's closed-network mean
value analysis predicts throughput and response time for every number of workers.
"""

from __future__ import annotations

import pandas as pd

from kubexp import queueing
from kubexp.analysis.figures import group_labels, varying

PREDICTION_COLUMNS = ["group", "workers", "successes_per_s", "response_time_ms", "service_ms"]


def predict(per_experiment: pd.DataFrame) -> pd.DataFrame:
    """Model curves per group of the Fig. 3 lines (PREDICTION_COLUMNS), for 1..max workers measured."""
    lines = varying(per_experiment, exclude=("workers",))
    frame = per_experiment.assign(_group=group_labels(per_experiment, lines))
    rows = []
    for label, group in frame.groupby("_group", sort=False):
        measured = group["success_elapsed_mean_ms"].dropna()
        if measured.empty or measured.min() <= 0:
            continue
        service_ms = float(measured.min())
        curve = queueing.mva(int(group["workers"].max()), float(group["think_time_ms"].iloc[0]), service_ms,
                          int(group["pods"].iloc[0]))
        rows += [(label, point.workers, point.throughput, point.response_time_ms, service_ms) for point in curve]
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
