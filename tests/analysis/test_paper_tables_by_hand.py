"""Table 1's grid and the data of Figs. 3 and 4, recomputed by hand from synthetic per-second rows."""

from __future__ import annotations

import itertools
import statistics

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from kubexp.analysis import figures, steady
from kubexp.analysis.comparisons import compare_factor, table1_grid

MATRIX = {"pods": [10, 20], "workers": [60, 120], "mesh": ["native", "istio"], "etcd_storage": ["ramdisk", "disk"]}
REPETITIONS, SECONDS = 3, 30


def second_rows() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(per-second rows, experiments): successes and response times from a formula, so every figure is known."""
    seconds, experiments = [], []
    for index, (pods, workers, mesh, storage) in enumerate(itertools.product(*MATRIX.values())):
        for repetition in range(REPETITIONS):
            experiment_id = f"e{index}-{repetition}"
            experiments.append({"experiment_id": experiment_id, "pods": pods, "workers": workers, "mesh": mesh,
                                "etcd_storage": storage})
            for t in range(SECONDS):
                successes = 5 * pods + workers // 30 - (15 if storage == "disk" else 0) \
                    - (8 if mesh == "istio" else 0) + (t * 7) % 11 + repetition
                seconds.append({"experiment_id": experiment_id, "t": t, "successes": successes, "failures": t % 2,
                                "requests": successes + t % 2, "elapsed_mean_ms": 40.0 + t % 5 + repetition,
                                "success_elapsed_mean_ms": 60.0 + t % 7 + repetition,
                                "recorded": True, "pods": pods, "workers": workers, "mesh": mesh,
                                "etcd_storage": storage})
    return seconds, experiments


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, object]], list[dict[str, object]]]:
    seconds, experiments = second_rows()
    steady_seconds = pd.DataFrame(seconds)
    per_experiment = steady.summarize(steady_seconds).merge(pd.DataFrame(experiments), on="experiment_id")
    return per_experiment, steady_seconds, seconds, experiments


def test_table_1_grid_by_hand(frames) -> None:
    per_experiment, steady_seconds, seconds, experiments = frames
    table = compare_factor(per_experiment, steady_seconds, "etcd_storage", within=["pods", "workers", "mesh"])
    grid = table1_grid(table, "mesh")
    assert list(grid.index) == [(10, 60), (10, 120), (20, 60), (20, 120)]  # pods x workers, as the paper's rows
    assert sorted(grid.columns) == ["istio", "native"]
    for (pods, workers), cells in grid.iterrows():
        for mesh, (p_seconds, p_holm, significant) in cells.items():
            cell = (pods, workers, mesh)
            successes = {storage: [row["successes"] for row in seconds if
                                   (row["pods"], row["workers"], row["mesh"], row["etcd_storage"]) == (*cell, storage)]
                         for storage in ("ramdisk", "disk")}
            # the paper's p-value: every second of every experiment of the cell, RAM disk against disk
            assert p_seconds == pytest.approx(scipy_stats.kruskal(successes["ramdisk"], successes["disk"]).pvalue)
            medians = {storage: [statistics.median(row["successes"] for row in seconds
                                                   if row["experiment_id"] == e["experiment_id"])
                                 for e in experiments if (e["pods"], e["workers"], e["mesh"], e["etcd_storage"])
                                 == (pods, workers, mesh, storage)] for storage in ("ramdisk", "disk")}
            raw = scipy_stats.kruskal(medians["ramdisk"], medians["disk"]).pvalue
            long_form = table[(table["pods"] == pods) & (table["workers"] == workers) & (table["mesh"] == mesh)]
            assert long_form["p_experiments"].iloc[0] == pytest.approx(raw)
            # Holm over the 9 rows (8 cells + pooled): 3 vs 3 experiments that never overlap give p = 0.0495 each,
            # so no cell survives the adjustment: significant stays False, as it must at this n
            assert p_holm >= raw and significant == bool(p_holm < 0.05)
            assert not significant


def test_fig_3_data_by_hand(frames) -> None:
    per_experiment, _, seconds, experiments = frames
    data = figures.fig3_data(per_experiment)
    assert list(data.columns[:4]) == ["pods", "mesh", "etcd_storage", "workers"]
    assert len(data) == 16
    for _, point in data.iterrows():
        ids = [e["experiment_id"] for e in experiments if (e["pods"], e["mesh"], e["etcd_storage"], e["workers"])
               == (point["pods"], point["mesh"], point["etcd_storage"], point["workers"])]
        means = [statistics.fmean(r["successes"] for r in seconds if r["experiment_id"] == i) for i in ids]
        # response time of successful requests, weighted by successes (the all-requests means are ignored)
        times = [sum(r["success_elapsed_mean_ms"] * r["successes"] for r in seconds if r["experiment_id"] == i)
                 / sum(r["successes"] for r in seconds if r["experiment_id"] == i) for i in ids]
        assert point["experiments"] == REPETITIONS
        assert point["successes_per_s"] == pytest.approx(statistics.fmean(means))
        assert point["response_time_ms"] == pytest.approx(statistics.fmean(times))


def test_fig_4_data_by_hand_keeps_every_worker_level(frames) -> None:
    per_experiment, _, seconds, experiments = frames
    data = figures.fig4_data(per_experiment)
    assert sorted(data["workers"].unique()) == [60, 120]
    assert list(data.columns[:4]) == ["etcd_storage", "workers", "mesh", "pods"]
    for _, point in data.iterrows():
        ids = [e["experiment_id"] for e in experiments if (e["workers"], e["etcd_storage"], e["mesh"], e["pods"])
               == (point["workers"], point["etcd_storage"], point["mesh"], point["pods"])]
        means = [statistics.fmean(r["successes"] for r in seconds if r["experiment_id"] == i) for i in ids]
        assert (point["successes_per_s"], point["low"], point["high"]) == pytest.approx(
            (statistics.fmean(means), min(means), max(means)))
