"""`kubexp report SUITE`: one self-contained HTML file (figures embedded), the PNGs and summary.json beside it.

Sections: summary and steady-state window, figures (each answering one question of the
paper), Table 1-style statistics per varying parameter, repetitions per scenario, data
completeness, provenance summary, unfinished experiments.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg

from kubexp.analysis import figures, loaders, prediction, slo
from kubexp.analysis import report_html as html
from kubexp.analysis.comparisons import comparisons, repetition_table
from kubexp.analysis.dataset import AnalysisSettings, SuiteData, load_suite_data
from kubexp.analysis.summary import build_summary

TIMELINES = 2  # experiments shown as time series: most failures, most platform events


@dataclass(frozen=True)
class RenderedFigure:
    name: str
    question: str
    path: Path


@dataclass(frozen=True)
class Report:
    path: Path  # the HTML file
    figures: list[RenderedFigure]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for the benchmark


def timeline_experiments(data: SuiteData, count: int = TIMELINES) -> list[str]:
    """The finished experiments most worth a look: most failures/s, then most platform events."""
    chosen: list[str] = []
    if not data.per_experiment.empty:
        chosen += data.per_experiment.sort_values("failures_mean", ascending=False)["experiment_id"].head(1).tolist()
    if not data.events.empty:
        analysed = set(data.per_experiment["experiment_id"])
        by_events = data.events["experiment_id"].value_counts().index.tolist()
        chosen += [e for e in by_events if e in analysed and e not in chosen][:1]
    return chosen[:count]


def _replica_points(conn: psycopg.Connection, suite: str, experiment_ids: list[str]) -> pd.DataFrame:
    """Ready and desired replicas per experiment and second (summed over series), where they were collected."""
    frames = [loaders.metric_points(conn, suite, name=name, experiment_ids=experiment_ids)
              for name in figures.REPLICA_SERIES]
    points = pd.concat([f[["experiment_id", "name", "t", "value"]] for f in frames if not f.empty], ignore_index=True) \
        if any(not f.empty for f in frames) else pd.DataFrame(columns=["experiment_id", "name", "t", "value"])
    points = points.astype({"experiment_id": str, "name": str})
    return points.groupby(["experiment_id", "name", "t"], as_index=False)["value"].sum()


def _render_figures(conn: psycopg.Connection, data: SuiteData, out_dir: Path,
                    timelines: list[str] | None = None) -> list[RenderedFigure]:
    folder = out_dir / "figures"
    rendered: list[RenderedFigure] = []

    def keep(name: str, question: str, figure: figures.Figure) -> None:
        rendered.append(RenderedFigure(name, question, figures.save(figure, folder / f"{name}.png")))

    if data.per_experiment.empty:
        return rendered
    unmeasured = int(data.per_experiment["success_elapsed_mean_ms"].isna().sum())
    keep("throughput-vs-workers", "How do successful responses/s and the response time of successful requests grow "
         "with the workers, and where does the queueing model expect the knee?"
         + (f" ({unmeasured} experiments collected before successful-only response times were stored have no "
            "response-time point.)" if unmeasured else ""),
         figures.throughput_and_response_time(data.per_experiment, prediction.predict(data.per_experiment)))
    keep("throughput-vs-pods", "How many successful responses/s per initial pod count, native vs istio?",
         figures.throughput_vs_pods(data.per_experiment))
    keep("std-per-scenario", "How much do per-second successful responses vary within each scenario?",
         figures.std_per_scenario(data.steady))
    keep("densities", "How are per-second successful responses distributed by etcd storage and mesh?",
         figures.densities(data.steady))
    chosen = timelines or timeline_experiments(data)
    raw = loaders.load_seconds(conn, data.suite["name"], experiment_ids=chosen, columns=("successes", "failures"))
    replicas = _replica_points(conn, data.suite["name"], chosen)
    windows = data.windows.set_index("experiment_id")
    described = data.per_experiment.set_index("experiment_id")
    for number, experiment_id in enumerate(chosen, start=1):
        row = described.loc[experiment_id]
        params = ", ".join(f"{p}={row[p]}" for p in data.parameters) or "single scenario"
        window = windows.loc[experiment_id]
        keep(f"timeline-{number}", f"What happened during experiment {experiment_id} ({params}, repetition "
             f"{row['repetition']})?",
             figures.timeline(raw[raw["experiment_id"] == experiment_id],
                              data.events[data.events["experiment_id"] == experiment_id],
                              title=f"experiment {experiment_id} - {params}, repetition {row['repetition']}",
                              window=(int(window["window_start_s"]), int(window["window_end_s"])),
                              replicas=replicas[replicas["experiment_id"] == experiment_id]))
    return rendered


def build_report(conn: psycopg.Connection, suite: str, out_dir: Path, *,
                 settings: AnalysisSettings | None = None, experiments: Sequence[str] = ()) -> Report:
    """Write out_dir/report.html (self-contained) and out_dir/figures/*.png; returns where and how long.

    experiments: the finished experiments to draw as timelines (Figs. 6-7); default: the most failures/s and
    the most platform events."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = load_suite_data(conn, suite, settings=settings)
    finished = set(data.per_experiment["experiment_id"]) if not data.per_experiment.empty else set()
    unknown = [e for e in experiments if e not in finished]
    if unknown:
        raise ValueError(f"experiment(s) {', '.join(unknown)} are not finished experiments of suite {suite} "
                         f"with load data; `kubexp suite status {suite}` lists the suite's experiments")
    timings["load"] = time.perf_counter() - started
    mark = time.perf_counter()
    tables = comparisons(data.per_experiment, data.steady, data.parameters, data.settings) \
        if not data.per_experiment.empty else {}
    repetitions = repetition_table(data.per_experiment, data.experiments, data.parameters, data.settings)
    timings["statistics"] = time.perf_counter() - mark
    mark = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered = _render_figures(conn, data, out_dir, list(experiments) or None)
    timings["figures"] = time.perf_counter() - mark
    mark = time.perf_counter()
    sections = [
        html.summary(data),
        html.figures_section([(f.name, f.question, base64.b64encode(f.path.read_bytes()).decode()) for f in rendered]),
        html.statistics(tables, data.settings, finished=len(data.per_experiment)),
        html.repetitions(repetitions, data.parameters, data.settings),
        html.slos(slo.verdict(conn, suite), data.settings.confidence),
        html.completeness(data, loaders.metric_completeness(conn, suite)),
        html.provenance(attempt_rows := loaders.attempts(conn, suite)),
        html.generator(attempt_rows, data.parameters),
        html.unfinished(data.experiments, data.parameters),
        html.abandoned(data.experiments, attempt_rows, data.parameters),
    ]
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    path = out_dir / "report.html"
    path.write_text(html.page(f"kubexp report: {suite}", generated, sections))
    points = loaders.metric_points(conn, suite)
    (out_dir / "summary.json").write_text(json.dumps(build_summary(data, tables, repetitions, generated, points),
                                                     indent=1) + "\n")
    timings["html"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return Report(path, rendered, timings)

