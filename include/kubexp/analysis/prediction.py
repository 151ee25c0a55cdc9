"""The queueing model's prediction for Fig. 3, with its service time estimated from the data.

Section 4.1 of the paper: at low load the response time is the service time, so the lowest
mean response time measured in a group of scenarios (same pods, mesh, ...) estimates it.
With that, the think time and the pods as servers, kubexp.model's closed-network mean
value analysis predicts throughput and response time for every number of workers.
"""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd

from kubexp.analysis.figures import group_labels, varying

PREDICTION_COLUMNS = ["group", "workers", "successes_per_s", "response_time_ms", "service_ms"]


def predict(per_experiment: pd.DataFrame, *, points: int = 60) -> pd.DataFrame:
    """Model curves per group of the Fig. 3 lines (PREDICTION_COLUMNS); empty without usable data."""
    model = importlib.import_module("kubexp.model")

    lines = varying(per_experiment, exclude=("workers",))
    frame = per_experiment.assign(_group=group_labels(per_experiment, lines))
    rows = []
    for label, group in frame.groupby("_group", sort=False):
        measured = group["elapsed_mean_ms"].dropna()
        if measured.empty:
            continue
        service_ms = float(measured.min())
        think_ms = float(group["think_time_ms"].iloc[0])
        pods = int(group["pods"].iloc[0])
        top = int(group["workers"].max())
        for workers in np.unique(np.linspace(1, top, min(points, top)).round().astype(int)):
            result = model.mva(int(workers), service_s=service_ms / 1000, think_s=think_ms / 1000, servers=pods)
            rows.append((label, int(workers), result.throughput_per_s, result.response_time_s * 1000, service_ms))
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
