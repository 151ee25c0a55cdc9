"""The paper's figures as PNGs, each answering one question, drawn from DataFrames of a fixed shape.

Input shapes (see docs/analysis.md):
- per_experiment: one row per experiment with the scenario parameters as columns
  (pods, workers, mesh, etcd_storage, ...) and the steady-state summary of
  kubexp.analysis.steady.summarize (successes_median, elapsed_mean_ms, ...).
- steady: per-second rows inside the steady windows (steady.trim) with the scenario
  parameters merged in.
- prediction: rows of (group, workers, successes_per_s, response_time_ms) from
  kubexp.analysis.prediction, drawn as dashed lines.

Figures are built on matplotlib.figure.Figure (no pyplot state), rendered by Agg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DPI = 100
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MAX_FACET_ROWS = 4
MAX_FACET_COLUMNS = 6
# Parameters that split a figure into lines or panels when a suite varies them (in this order).
GROUPING_PARAMETERS = ("pods", "pods_max", "mesh", "etcd_storage", "workers", "think_time_ms", "memory_limit_mib",
                       "cpu_limit_millicores", "etcd_fsync_delay_ms", "arrival_rate_per_s", "duration_s",
                       "connect_timeout_ms", "response_timeout_ms")


def varying(frame: pd.DataFrame, candidates: Sequence[str] = GROUPING_PARAMETERS,
            exclude: Sequence[str] = ()) -> list[str]:
    """The parameters among `candidates` that take more than one value in `frame`.

    A parameter equal to an earlier one in every row (pods_max that follows pods) is skipped,
    also when that earlier one is excluded.
    """
    seen: list[str] = []
    for name in candidates:
        if name not in frame or frame[name].nunique(dropna=False) < 2:
            continue
        if not any(frame[name].equals(frame[other]) for other in seen):
            seen.append(name)
    return [name for name in seen if name not in exclude]


def group_labels(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """'pods=10, mesh=istio' style labels; 'all' when no column varies."""
    if not columns:
        return pd.Series("all", index=frame.index)
    parts = [f"{name}=" + frame[name].astype(str) for name in columns]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label


def ordered_labels(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The distinct group labels in the natural order of the parameter values (10 before 100)."""
    if not columns:
        return ["all"]
    ordered = frame[list(columns)].drop_duplicates().sort_values(list(columns))
    return list(dict.fromkeys(group_labels(ordered, columns)))


def _floor_at_zero(axes: Iterable[Axes]) -> None:
    # After all plotting: shared axes keep the limits set first, so set them only once data is in.
    for axis in axes:
        axis.set_ylim(bottom=0)


def png_bytes(figure: Figure) -> bytes:
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure))
    return path


def _evenly_spaced(values: Sequence[object], limit: int) -> list[object]:
    if len(values) <= limit:
        return list(values)
    picks = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in sorted(set(picks))]


def _line_colours(count: int) -> list[tuple[float, float, float, float] | str]:
    """Distinct colours for up to 10 lines; beyond that an ordered colormap (pods 1 -> 20 light to dark)."""
    if count <= len(COLOURS):
        return list(COLOURS[:count])
    return [colormaps["viridis"](x) for x in np.linspace(0.9, 0.0, count)]


def fig3_data(per_experiment: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3's points as the paper drew them: per varying setting and worker count, the mean over experiments of
    each experiment's mean successful responses/s and of its mean response time of successful requests (ms,
    weighted by successes), with the number of experiments and of those with a successful-only response time
    (experiments collected before it was stored have none)."""
    keys = [*varying(per_experiment, exclude=("workers",)), "workers"]
    grouped = per_experiment.groupby(keys, sort=True)
    return grouped.agg(successes_per_s=("successes_mean", "mean"),
                       response_time_ms=("success_elapsed_mean_ms", "mean"),
                       experiments=("experiment_id", "size"),
                       response_time_experiments=("success_elapsed_mean_ms", "count")).reset_index()


def fig4_data(per_experiment: pd.DataFrame) -> pd.DataFrame:
    """Fig. 4's points: per other varying setting (every worker level, none left out), mesh and initial pods, the
    mean over experiments of each experiment's mean successful responses/s, with min, max and count."""
    keys = [*varying(per_experiment, exclude=("pods", "mesh")), *(["mesh"] if "mesh" in per_experiment else []),
            "pods"]
    grouped = per_experiment.groupby(keys, sort=True)["successes_mean"]
    return grouped.agg(successes_per_s="mean", low="min", high="max", experiments="size").reset_index()


def throughput_and_response_time(per_experiment: pd.DataFrame, prediction: pd.DataFrame | None = None) -> Figure:
    """Fig. 3: how do successful responses/s and response time grow with the number of workers?

    One column of panels per categorical setting (mesh, etcd storage), one line per remaining
    numeric setting (pods); solid: measured (dots: single experiments), dashed: queueing model.
    """
    every = varying(per_experiment, exclude=("workers",))
    categorical = [p for p in every if not pd.api.types.is_numeric_dtype(per_experiment[p])]
    numeric = [p for p in every if p not in categorical]
    frame = per_experiment.assign(_group=group_labels(per_experiment, every),
                                  _panel=group_labels(per_experiment, categorical),
                                  _line=group_labels(per_experiment, numeric))
    panels = _evenly_spaced(ordered_labels(frame, categorical), 4)
    line_values = ordered_labels(frame, numeric)
    colours = dict(zip(line_values, _line_colours(len(line_values)), strict=True))
    figure = Figure(figsize=(max(9.0, 4.5 * len(panels) + 2), 7.5), layout="constrained")
    axes = figure.subplots(2, len(panels), sharex=True, sharey="row", squeeze=False)
    for column, panel in enumerate(panels):
        top, bottom = axes[0][column], axes[1][column]
        for line in line_values:
            group = frame[(frame["_panel"] == panel) & (frame["_line"] == line)]
            if group.empty:
                continue
            colour = colours[line]
            means = fig3_data(group.drop(columns=["_group", "_panel", "_line"])).groupby("workers").mean(
                numeric_only=True)
            top.scatter(group["workers"], group["successes_mean"], s=8, alpha=0.35, color=colour)
            top.plot(means.index, means["successes_per_s"], marker="o", markersize=3, color=colour,
                     label=line if column == 0 else None)
            bottom.scatter(group["workers"], group["success_elapsed_mean_ms"], s=8, alpha=0.35, color=colour)
            bottom.plot(means.index, means["response_time_ms"], marker="o", markersize=3, color=colour)
            model = pd.DataFrame() if prediction is None or prediction.empty else \
                prediction[prediction["group"] == group["_group"].iloc[0]].sort_values("workers")
            if not model.empty:
                top.plot(model["workers"], model["successes_per_s"], linestyle="--", linewidth=1, color=colour)
                bottom.plot(model["workers"], model["response_time_ms"], linestyle="--", linewidth=1, color=colour)
        top.set_title(panel if categorical else "", fontsize="small")
        bottom.set_xlabel("workers (closed-loop load threads)")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        for axis in (top, bottom):
            axis.grid(alpha=0.3)
    # The model can predict response times far beyond anything measured; keep the measurements readable.
    measured_top = per_experiment["success_elapsed_mean_ms"].max()
    if pd.notna(measured_top) and measured_top > 0:
        axes[1][0].set_ylim(0, measured_top * 1.3)
    _floor_at_zero(axes[0])
    axes[0][0].set_ylabel("successful responses/s\n(mean over experiments of their means)")
    axes[1][0].set_ylabel("mean response time of\nsuccessful requests (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")]
    labels += ["measured (mean; dots: experiments)", "queueing model (MVA)"]
    figure.legend(handles, labels, loc="outside right center", fontsize="small")
    figure.suptitle("Successful responses/s and response time vs workers, with the queueing model")
    return figure


def throughput_vs_pods(per_experiment: pd.DataFrame) -> Figure:
    """Fig. 4: how many successful responses/s per initial pod count, native vs istio? One panel per value of the
    other settings (every worker level: more panel rows, none left out), points from fig4_data."""
    panels = varying(per_experiment, exclude=("pods", "mesh"))
    data = fig4_data(per_experiment)
    data = data.assign(_panel=group_labels(data, panels))
    panel_values = ordered_labels(data, panels)
    columns = min(len(panel_values), 4)
    figure, grid = _grid(-(-len(panel_values) // columns), columns, width=4.0, height=3.0)
    axes = grid.ravel()
    meshes = sorted(data["mesh"].unique()) if "mesh" in data else ["native"]
    for axis, panel in zip(axes, panel_values, strict=False):
        subset = data[data["_panel"] == panel]
        for colour, mesh in zip(_cycle(), meshes, strict=False):
            points = subset[subset["mesh"] == mesh] if "mesh" in subset else subset
            if points.empty:
                continue
            axis.errorbar(points["pods"], points["successes_per_s"],
                          yerr=[points["successes_per_s"] - points["low"], points["high"] - points["successes_per_s"]],
                          marker="o", capsize=3, color=colour, label=str(mesh))
        axis.set_title(str(panel), fontsize="small")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in axes[len(panel_values):]:
        axis.set_visible(False)
    _floor_at_zero(axes)
    axes[0].legend(title="mesh", fontsize="small")
    figure.supxlabel("initial pods")
    figure.supylabel("successful responses/s (mean of experiments' means; bars: min-max)")
    figure.suptitle("Successful responses/s vs initial pods, native vs istio")
    return figure


def std_per_scenario(steady: pd.DataFrame) -> Figure:
    """Fig. 5: how much do per-second successful responses vary within each scenario?"""
    keys = ["scenario_id", *[name for name in GROUPING_PARAMETERS if name in steady]]
    spread = steady.groupby(keys, dropna=False)["successes"].std().rename("std").reset_index()
    x_axis = "workers" if spread["workers"].nunique() > 1 else "pods"
    panels = varying(spread, candidates=("mesh", "etcd_storage"))
    colours_by = varying(spread, exclude=(x_axis, *panels))
    spread["_panel"] = group_labels(spread, panels)
    spread["_colour"] = group_labels(spread, colours_by)
    panel_values = ordered_labels(spread, panels)
    columns = min(len(panel_values), 2)
    rows = -(-len(panel_values) // columns)
    figure = Figure(figsize=(max(7.0, 5.5 * columns), 4 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    colour_values = ordered_labels(spread, colours_by)
    for axis in axes[len(panel_values):]:
        axis.set_visible(False)
    for axis, panel in zip(axes, panel_values, strict=False):
        subset = spread[spread["_panel"] == panel]
        for colour, value in zip(_cycle(), colour_values, strict=False):
            points = subset[subset["_colour"] == value].sort_values(x_axis)
            axis.plot(points[x_axis], points["std"], marker="o", linestyle=":", color=colour, label=value)
        axis.set_title(panel, fontsize="small")
        axis.set_xlabel(x_axis)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    _floor_at_zero(axes)
    axes[0].set_ylabel("std-dev of successful responses/s (pooled seconds)")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="x-small")
    figure.suptitle("Variability per scenario: values far from 0 mean instability")
    return figure


REPLICA_SERIES = {"replicas_available": "ready replicas", "replicas_desired": "Deployment desired replicas",
                  "hpa_desired_replicas": "HPA desired replicas"}


def erroneous_regions(seconds: pd.DataFrame) -> list[tuple[int, int]]:
    """[start, end) runs of seconds in which failed responses outnumber successful ones (the paper's
    'erroneous region' of Fig. 6)."""
    ordered = seconds.sort_values("t")
    bad = (ordered["failures"] > ordered["successes"]).to_numpy()
    t = ordered["t"].to_numpy()
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for second, is_bad in zip(t, bad, strict=True):
        if is_bad and start is None:
            start = int(second)
        elif not is_bad and start is not None:
            regions.append((start, int(second)))
            start = None
    if start is not None:
        regions.append((start, int(t[-1]) + 1))
    return regions


def timeline(seconds: pd.DataFrame, events: pd.DataFrame, *, title: str, window: tuple[int, int] | None = None,
             max_event_kinds: int = 8, replicas: pd.DataFrame | None = None) -> Figure:
    """Figs. 6-7: what happened during one experiment: successes, failures, platform events, the erroneous
    region (failures > successes) and, where collected, ready and desired replicas (columns name, t, value)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axis = figure.subplots()
    ordered = seconds.sort_values("t")
    axis.plot(ordered["t"], ordered["successes"], color="#1f77b4", label="successful responses/s")
    axis.plot(ordered["t"], ordered["failures"], color="#d62728", label="failed responses/s")
    if window is not None:
        first, last = int(ordered["t"].min()), int(ordered["t"].max())
        if window[0] > first:
            axis.axvspan(first, window[0], color="0.85", label="outside steady window")
        if window[1] < last:
            axis.axvspan(window[1], last, color="0.85")
    for i, (start, end) in enumerate(erroneous_regions(ordered)):
        axis.axvspan(start, end, color="#d62728", alpha=0.12,
                     label="erroneous region (failures > successes)" if i == 0 else None)
    kinds = events["kind"].value_counts().index[:max_event_kinds] if not events.empty else []
    for colour, kind in zip(COLOURS[2:] + COLOURS[:2], kinds, strict=False):
        times = events.loc[events["kind"] == kind, "t"]
        for i, t in enumerate(times):
            axis.axvline(t, color=colour, linestyle="--", alpha=0.8, label=f"{kind} ({len(times)})" if i == 0 else None)
    handles, labels = axis.get_legend_handles_labels()
    if replicas is not None and not replicas.empty:
        counts = axis.twinx()
        for (name, label), style in zip(REPLICA_SERIES.items(), ("-", ":", "-."), strict=True):
            series = replicas[replicas["name"] == name].sort_values("t")
            if not series.empty:
                counts.step(series["t"], series["value"], where="post", color="0.2", linestyle=style, label=label)
        counts.set_ylabel("replicas")
        counts.set_ylim(bottom=0)
        counts.yaxis.set_major_locator(MaxNLocator(integer=True))
        more_handles, more_labels = counts.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axis.set_xlabel("t (s from load start)")
    axis.set_ylabel("responses/s")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(handles, labels, fontsize="small", loc="upper right")
    axis.set_title(title, fontsize="medium")
    return figure


def densities(steady: pd.DataFrame, *, bins: int = 60) -> Figure:
    """Fig. 8: how are per-second successful responses distributed by etcd storage and mesh?"""
    facets = [name for name in ("pods", "workers") if name in steady]
    lines = [name for name in ("etcd_storage", "mesh") if name in steady]
    top = float(steady["successes"].max()) or 1.0
    edges = np.linspace(0, top, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    # One pass over the (large) per-second frame: a histogram per facet cell and line.
    histograms: dict[tuple[Any, ...], np.ndarray] = {}
    for key, values in steady.groupby([*facets, *lines], observed=True, sort=True)["successes"]:
        histograms[key if isinstance(key, tuple) else (key,)] = np.histogram(values, bins=edges, density=True)[0]
    keys = list(histograms)
    row_values = _evenly_spaced(sorted({k[0] for k in keys}), MAX_FACET_ROWS) if "pods" in facets else [None]
    column_values = _evenly_spaced(sorted({k[len(facets) - 1] for k in keys}), MAX_FACET_COLUMNS) \
        if "workers" in facets else [None]
    line_keys = sorted({k[len(facets):] for k in keys})
    labels = {line: ", ".join(f"{n}={v}" for n, v in zip(lines, line, strict=True)) or "all" for line in line_keys}
    figure, axes = _grid(len(row_values), len(column_values), width=3.6, height=2.6)
    for r, row_value in enumerate(row_values):
        for c, column_value in enumerate(column_values):
            axis = axes[r][c]
            cell = tuple(v for v, used in ((row_value, "pods" in facets), (column_value, "workers" in facets)) if used)
            for colour, line in zip(_cycle(), line_keys, strict=False):
                if (*cell, *line) in histograms:
                    axis.plot(centres, histograms[(*cell, *line)], color=colour, label=labels[line])
            axis.set_title(", ".join(part for part in (f"{row_value} pods" if "pods" in facets else "",
                                                       f"{column_value} workers" if "workers" in facets else "")
                                     if part), fontsize="small")
            axis.grid(alpha=0.3)
    figure.legend(*axes[0][0].get_legend_handles_labels(), loc="upper right", fontsize="x-small")
    figure.supxlabel("successful responses per second (steady-state seconds)")
    figure.supylabel("density")
    figure.suptitle("Distribution of per-second successful responses by etcd storage and mesh")
    return figure


def _grid(rows: int, columns: int, *, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of shared-axis panels with fixed margins (in inches): no layout engine, which for
    dozens of panels costs more than drawing them."""
    size = (max(6.0, width * columns + 1.0), max(4.0, height * rows + 1.4))
    figure = Figure(figsize=size)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False, gridspec_kw={
        "left": 0.75 / size[0], "right": 1 - 0.2 / size[0], "bottom": 0.65 / size[1], "top": 1 - 0.75 / size[1],
        "wspace": 0.12, "hspace": 0.35})
    return figure, axes


def _cycle() -> list[str]:
    return list(COLOURS) * 10
