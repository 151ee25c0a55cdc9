"""Every figure renders a non-trivial PNG from frames of the documented shape."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from analysis_data import Frames, build_frames

from kubexp.analysis import figures


def test_varying_skips_constant_and_redundant_parameters(etcd_frames: Frames) -> None:
    assert figures.varying(etcd_frames.experiments) == ["pods", "mesh", "etcd_storage", "workers"]
    assert "pods_max" not in figures.varying(etcd_frames.experiments)  # follows pods
    assert figures.varying(etcd_frames.experiments, exclude=("workers",)) == ["pods", "mesh", "etcd_storage"]
    assert "pods_max" not in figures.varying(etcd_frames.experiments, exclude=("pods",))


def test_labels_follow_value_order_not_text_order() -> None:
    frame = pd.DataFrame({"workers": [120, 60, 90, 60], "mesh": ["istio", "native", "native", "istio"]})
    assert figures.ordered_labels(frame, ["workers"]) == ["workers=60", "workers=90", "workers=120"]
    assert figures.group_labels(frame, ["workers", "mesh"]).iloc[0] == "workers=120, mesh=istio"
    assert figures.ordered_labels(frame, []) == ["all"]


def test_each_figure_is_a_non_trivial_png(etcd_frames: Frames, tmp_path: Path,
                                          png_check: Callable[[Path], tuple[int, int]]) -> None:
    per_experiment, kept = etcd_frames.per_experiment, etcd_frames.steady
    prediction = pd.DataFrame({"group": "pods=10, mesh=native, etcd_storage=ramdisk", "workers": [60, 120],
                               "successes_per_s": [150.0, 160.0], "response_time_ms": [300.0, 700.0]})
    events = etcd_frames.events
    experiment_id = events.loc[events["kind"] == "OOMKilled", "experiment_id"].iloc[0]
    window = etcd_frames.windows.set_index("experiment_id").loc[experiment_id]
    drawn = {
        "throughput": figures.throughput_and_response_time(per_experiment, prediction),
        "pods": figures.throughput_vs_pods(per_experiment),
        "std": figures.std_per_scenario(kept),
        "timeline": figures.timeline(etcd_frames.seconds[etcd_frames.seconds["experiment_id"] == experiment_id],
                                     etcd_frames.events[etcd_frames.events["experiment_id"] == experiment_id],
                                     title=experiment_id,
                                     window=(int(window["window_start_s"]), int(window["window_end_s"]))),
        "densities": figures.densities(kept),
    }
    for name, figure in drawn.items():
        png_check(figures.save(figure, tmp_path / f"{name}.png"))
    # The model's dashed line and the events' markers are really drawn.
    dashed = [line for axis in drawn["throughput"].axes for line in axis.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2  # throughput and response time of the one group with a prediction
    assert list(dashed[0].get_xdata()) == [60, 120]
    labels = [text.get_text() for text in drawn["timeline"].axes[0].get_legend().get_texts()]
    assert any(label.startswith("OOMKilled") for label in labels)
    assert "outside steady window" in labels


def test_density_facets_are_capped_and_figures_handle_one_scenario(
        tmp_path: Path, png_check: Callable[[Path], tuple[int, int]]) -> None:
    wide = build_frames({"pods": [1, 2, 3, 4, 5, 10], "workers": [6, 12, 18, 24, 30, 36, 42, 48]}, repetitions=1,
                        seconds=90)
    figure = figures.densities(wide.steady)
    assert len(figure.axes) == figures.MAX_FACET_ROWS * figures.MAX_FACET_COLUMNS
    single = build_frames({"workers": [10]}, repetitions=2, seconds=90)
    for name, drawn in {"throughput": figures.throughput_and_response_time(single.per_experiment),
                        "pods": figures.throughput_vs_pods(single.per_experiment),
                        "std": figures.std_per_scenario(single.steady),
                        "densities": figures.densities(single.steady)}.items():
        png_check(figures.save(drawn, tmp_path / f"single-{name}.png"))


def test_timeline_marks_the_erroneous_region_and_draws_replicas() -> None:
    seconds = pd.DataFrame({"t": range(10), "successes": [9, 9, 2, 1, 9, 9, 0, 0, 0, 9],
                            "failures": [0, 0, 5, 5, 0, 1, 3, 3, 3, 0]})
    assert figures.erroneous_regions(seconds) == [(2, 4), (6, 9)]
    replicas = pd.DataFrame({"name": ["replicas_available"] * 3 + ["hpa_desired_replicas"] * 3,
                             "t": [0, 4, 8] * 2, "value": [10, 6, 10, 10, 10, 10]})
    figure = figures.timeline(seconds, pd.DataFrame(columns=["t", "kind"]), title="x", replicas=replicas)
    main_axis, counts = figure.axes
    labels = main_axis.get_legend().get_texts()
    assert {t.get_text() for t in labels} >= {"erroneous region (failures > successes)", "ready replicas",
                                              "HPA desired replicas"}
    assert counts.get_ylabel() == "replicas"
