"""HTML sections of the report. Every value from the store or the suite is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

import pandas as pd

from kubexp.analysis import stats
from kubexp.analysis.comparisons import POOLED, pairwise, table1_grid, within_columns
from kubexp.analysis.dataset import AnalysisSettings, SuiteData
from kubexp.analysis.slo import SloCase
from kubexp.analysis.stats import UNIT_LABELS
from kubexp.suite import MetricsSection

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
tr.pooled td { background: #f7f7ff; font-style: italic; } tr.significant td.sig { background: #e6f4e6; }
tr.flagged td { background: #fdecea; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-weight: 600; margin-bottom: 0.4em; } .note { color: #555; font-size: 0.9em; }
details { margin: 0.4em 0 1em; } code { background: #f4f4f4; padding: 0 0.2em; }
"""


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers rounded, missing values as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.3e}"
    return escape(str(value))


def fmt_p(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "&ndash;"
    return "&lt; 1e-300" if p == 0 else f"{p:.2g}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 0,
          row_classes: Sequence[str] | None = None) -> str:
    """Cells are already HTML (formatted with fmt/escape); the first `text_columns` are left-aligned."""
    def cell(tag: str, i: int, content: str) -> str:
        return f"<{tag}{' class=text' if i < text_columns else ''}>{content}</{tag}>"

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(header))
    body = []
    for n, row in enumerate(rows):
        css = f' class="{row_classes[n]}"' if row_classes and row_classes[n] else ""
        body.append(f"<tr{css}>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, generated: str, sections: Sequence[str]) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p class=note>Generated {escape(generated)} by kubexp from the experiment store.</p>"
            + "".join(sections) + "</body></html>")


def summary(data: SuiteData) -> str:
    experiments, windows = data.experiments, data.windows
    finished = int((experiments["status"] == "finished").sum()) if not experiments.empty else 0
    definition = data.suite.get("definition") or {}
    facts = [
        ("suite", escape(str(data.suite["name"]))),
        ("description", escape(str(definition.get("description", "")))),
        ("platform / cluster", escape(f"{data.suite['platform']} / {data.suite['cluster']}")),
        ("scenarios", str(experiments["scenario_id"].nunique() if not experiments.empty else 0)),
        ("varying parameters", escape(", ".join(data.parameters) or "none")),
        ("experiments finished / planned", f"{finished} / {len(experiments)}"),
        ("steady-state window", escape(data.settings.window_description())),
        ("per-second rows analysed", f"{len(data.steady):,}"),
    ]
    if not windows.empty:
        facts.append(("window start (s), median [min, max]", _spread(windows["window_start_s"])))
        facts.append(("window seconds, median [min, max]", _spread(windows["seconds"])))
    rows = [[escape(k), v] for k, v in facts]
    return "<h2>Summary</h2>" + table(["", ""], rows, text_columns=2)


def _spread(values: pd.Series) -> str:
    return f"{values.median():g} [{values.min():g}, {values.max():g}]"


def figures_section(rendered: Sequence[tuple[str, str, str]]) -> str:
    if not rendered:
        return "<h2>Figures</h2><p>No finished experiments with load data yet.</p>"
    parts = [f'<figure id="{escape(name)}"><figcaption>{escape(question)}</figcaption>'
             f'<img alt="{escape(name)}" src="data:image/png;base64,{b64}"></figure>'
             for name, question, b64 in rendered]
    return "<h2>Figures</h2>" + "".join(parts)


def statistics(tables: dict[str, pd.DataFrame], settings: AnalysisSettings, *, finished: int) -> str:
    intro = (f"<h2>Statistics (Table 1 style)</h2><p>Outcome: each experiment's steady-state median successful "
             f"responses/s. For each parameter, every row holds the other varying parameters fixed; the last row "
             f"pools them (as the paper's section 6.1 did). <b>p (experiments)</b>: Kruskal-Wallis H-test with "
             f"{escape(UNIT_LABELS['experiment'])}, Holm-adjusted over the rows; <b>significant</b> means adjusted "
             f"p &lt; {settings.alpha:g}. <b>p (seconds)</b>: the paper's variant, {escape(UNIT_LABELS['second'])}. "
             f"Medians with their {settings.confidence:.0%} order-statistic interval [x(k), x(n+1-k)] and its exact "
             f"coverage (distribution-free); below {stats.min_n_for(settings.confidence)} experiments no interval "
             f"reaches {settings.confidence:.0%} and none is shown (the sample range of n = 2 covers the median "
             f"only 50 % of the time). <b>Effect size</b>: "
             f"Cliff's delta, P(X &gt; Y) - P(X &lt; Y) over the experiments (negligible &lt; 0.147 &le; small "
             f"&lt; 0.33 &le; medium &lt; 0.474 &le; large); for parameters with more than two levels, per pair of "
             f"levels, beside the <b>post-hoc p-value</b> of that pair (Dunn test, Holm-adjusted over the row's "
             f"pairs). The table shows the pairs that differ; every pair is listed below it.</p>")
    if not finished:
        return intro + "<p>No finished experiments yet.</p>"
    if not tables:
        return intro + "<p>The suite varies no parameter: there are no scenario groups to compare.</p>"
    return intro + "".join(_factor_table(factor, frame, settings.alpha) for factor, frame in tables.items())


def _factor_table(factor: str, frame: pd.DataFrame, alpha: float) -> str:
    levels = [c[len("n["):-1] for c in frame.columns if c.startswith("n[")]
    within = within_columns(frame)
    if len(levels) == 2:
        effect = [f"Cliff's delta, {factor}={levels[0]} vs {levels[1]} (effect size)"]
    else:
        effect = [f"pairs that differ: Dunn-Holm p < {alpha:g} (post-hoc test)",
                  "Cliff's delta of those pairs (effect size)"]
    header = [*within, *(f"{factor}={level}: n, median [CI]" for level in levels), *effect, "p (experiments)",
              "p Holm", "significant", "p (seconds, paper)", "note"]
    rows: list[list[str]] = []
    classes: list[str] = []
    for _, row in frame.iterrows():
        cells = [fmt(row[w]) for w in within]
        for level in levels:
            ci = row[f"ci[{level}]"]
            interval = ("" if not isinstance(ci, stats.MedianInterval) else f" {ci.text}" if ci.low is not None
                        else f" (no {ci.confidence:.0%} interval at n = {ci.n})")
            cells.append(f"{row[f'n[{level}]']}: {fmt(row[f'median[{level}]'], 4)}{escape(interval)}")
        if len(levels) == 2:
            cells.append("&ndash;" if pd.isna(row["cliffs_delta"])
                         else f"{row['cliffs_delta']:.2f} ({escape(row['magnitude'])})")
        else:
            ran = any(not math.isnan(pair.p_dunn_holm) for pair in row["pairs"])
            # a pair is only called different where the row's Kruskal-Wallis test is significant
            differing = [pair for pair in row["pairs"] if row["significant"] and pair.p_dunn_holm < alpha]
            silent = "none" if row["significant"] else "not tested (Kruskal-Wallis not significant)"
            cells.append("<br>".join(f"{escape(pair.label)}: {fmt_p(pair.p_dunn_holm)}" for pair in differing)
                         or (silent if ran else "&ndash;"))
            cells.append("<br>".join(f"{escape(pair.label)}: {_delta(pair.cliffs_delta, pair.magnitude)}"
                                     for pair in differing) or "&ndash;")
        cells += [fmt_p(row["p_experiments"]), fmt_p(row["p_experiments_holm"]),
                  f"<b>{fmt(bool(row['significant']))}</b>", fmt_p(row["p_seconds"]), escape(str(row["note"]))]
        rows.append(cells)
        pooled = bool(within) and all(row[w] == POOLED for w in within)
        classes.append(" ".join(c for c in ("pooled" if pooled else "", "significant" if row["significant"] else "")
                                if c))
    body = table(header, rows, text_columns=len(within), row_classes=classes)
    if "mesh" in within and len(within) > 1:
        body += _grid(factor, frame)
    if len(levels) > 2:
        body += _all_pairs(factor, frame, within)
    return f"<h3>Does {escape(factor)} change successful responses/s?</h3>{body}".replace(
        "<td><b>yes</b>", "<td class=sig><b>yes</b>")


def _grid(factor: str, frame: pd.DataFrame) -> str:
    """The table above as the paper's Table 1: rows = the other fixed parameters, columns = mesh."""
    grid = table1_grid(frame, "mesh")
    header = [*grid.index.names, *(f"{mesh}: {factor} significant?" for mesh in grid.columns)]
    rows = []
    for key, cells in grid.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        rows.append([*(fmt(k) for k in keys), *(
            "&ndash;" if not isinstance(cell, tuple) else
            f"<b>{fmt(bool(cell[2]))}</b> (p seconds {fmt_p(cell[0])}; experiments, Holm {fmt_p(cell[1])})"
            for cell in cells)])
    return ("<p>As the paper's Table 1 (a cell is a row of the table above; <i>significant</i> from the "
            "experiment-level test):</p>" + table(header, rows, text_columns=len(grid.index.names)))


def _delta(delta: float, magnitude: str) -> str:
    return "&ndash;" if math.isnan(delta) else f"{delta:.2f} ({escape(magnitude)})"


def _all_pairs(factor: str, frame: pd.DataFrame, within: Sequence[str]) -> str:
    """Every pair of levels of every row: Cliff's delta beside the Dunn-Holm p-value, folded away."""
    pairs = pairwise(frame)
    rows = [[*(fmt(r[w]) for w in within), escape(f"{r['a']} vs {r['b']}"), f"{r['n_a']} / {r['n_b']}",
             _delta(r["cliffs_delta"], r["magnitude"]), fmt_p(r["p_dunn_holm"])] for _, r in pairs.iterrows()]
    return (f"<details><summary>All {len(pairs)} pairs of {escape(factor)} levels: Cliff's delta (effect size) "
            f"and Dunn-Holm p-value</summary>"
            + table([*within, f"{factor} pair", "n", "Cliff's delta (effect size)", "Dunn-Holm p (post-hoc test)"],
                    rows, text_columns=len(within) + 1) + "</details>")


def repetitions(frame: pd.DataFrame, parameters: Sequence[str], settings: AnalysisSettings) -> str:
    title = (f"<h2>Repetitions</h2><p>Do the finished repetitions pin each scenario's median successful "
             f"responses/s to a {settings.confidence:.0%} order-statistic interval (exact coverage in brackets) "
             f"no wider than "
             f"{settings.target_relative_ci_width:.0%} of the median? Further repetitions are estimated from the "
             f"1/&radic;n narrowing of the interval (a planning figure, not a guarantee).</p>")
    if frame.empty:
        return title + "<p>No scenarios.</p>"
    header = ["#", *parameters, "finished / planned", "median", "CI", "relative width", "pinned", "more needed",
              "verdict"]
    rows = [[str(r["scenario_index"]), *[fmt(r[p]) for p in parameters], f"{r['finished']} / {r['planned']}",
             fmt(r["median"], 4), "none (see verdict)" if pd.isna(r["ci_low"])
             else f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] ({r['coverage']:.1%})",
             "&ndash;" if pd.isna(r["relative_width"]) else f"{r['relative_width']:.1%}", fmt(bool(r["pinned"])),
             fmt(r["more_needed"]), escape(str(r["verdict"]))] for _, r in frame.iterrows()]
    pinned = int(frame["pinned"].sum())
    return title + f"<p>{pinned} of {len(frame)} scenarios pinned.</p>" + table(header, rows, text_columns=0)


def slos(cases: Sequence[SloCase], confidence: float) -> str:
    """The suite's SLOs judged per scenario (as `kubexp verdict` does, from the stored per-experiment values)."""
    title = (f"<h2>SLOs</h2><p>Each SLO (suite key <code>slo</code>) bounds a per-experiment figure; a scenario "
             f"meets it when the whole {confidence:.0%} order-statistic interval of the median of its finished "
             f"experiments' values is within the bound, misses it when the interval is wholly outside, and is "
             f"undecided otherwise. SLOs never make an experiment unfinished.</p>")
    if not cases:
        return title + "<p>The suite defines no SLO.</p>"
    counts = {outcome: sum(case.outcome == outcome for case in cases) for outcome in ("met", "missed", "undecided")}
    rows = [[escape(case.outcome), escape(case.scenario_label), escape(case.slo), escape(f"{case.figure} {case.bound}"),
             str(len(case.values)), fmt(case.judgement.interval.median if case.judgement.interval else None, 4),
             escape(case.judgement.reason)] for case in cases]
    classes = ["flagged" if case.outcome == "missed" else "" for case in cases]
    return (title + "<p>" + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) + "</p>"
            + table(["outcome", "scenario", "SLO", "figure and bound", "experiments", "median", "why"], rows,
                    text_columns=4, row_classes=classes))


def completeness(data: SuiteData, metrics: pd.DataFrame) -> str:
    parts = ["<h2>Data completeness</h2>"]
    finished = data.finished
    analysed = set(data.per_experiment["experiment_id"])
    without_load = finished[~finished["experiment_id"].isin(analysed)]
    parts.append(f"<p>{len(analysed)} of {len(finished)} finished experiments have per-second load data"
                 + (": missing for " + ", ".join(escape(e) for e in without_load["experiment_id"]) if len(
                     without_load) else "") + ".</p>")
    if not data.per_experiment.empty:
        share = data.per_experiment["seconds_recorded"] / data.per_experiment["seconds"].where(
            data.per_experiment["seconds"] > 0)
        gaps = data.per_experiment.assign(share=share)[share < 1].sort_values("share")
        parts.append(f"<p>Seconds of the steady window with a load row: median {share.median():.1%}, "
                     f"minimum {share.min():.1%}. Missing seconds count as 0 successful responses.</p>")
        if not gaps.empty:
            rows = [[escape(r["experiment_id"]), str(r["scenario_index"]), f"{r['share']:.1%}",
                     str(int(r["seconds"] - r["seconds_recorded"]))] for _, r in gaps.head(50).iterrows()]
            parts.append("<details><summary>Experiments with missing seconds</summary>" + table(
                ["experiment", "scenario #", "seconds with data", "seconds missing"], rows, text_columns=1)
                + "</details>")
    definition = data.suite.get("definition") or {}
    threshold = float((definition.get("metrics") or {}).get("completeness_min", MetricsSection.completeness_min))
    if metrics.empty:
        parts.append("<p>No metric series stored.</p>")
    else:
        by_name = metrics.groupby("name").agg(experiments=("experiment_id", "nunique"),
                                              completeness_min=("completeness_min", "min"),
                                              completeness_mean=("completeness_mean", "mean"),
                                              below=("completeness_min", lambda v: int((v < threshold).sum())))
        rows = [[escape(str(name)), str(int(r["experiments"])), f"{r['completeness_min']:.1%}",
                 f"{r['completeness_mean']:.1%}", str(int(r["below"]))] for name, r in by_name.iterrows()]
        parts.append(f"<p>Metric series (share of seconds with a point; threshold {threshold:.0%}):</p>"
                     + table(["metric", "experiments", "min", "mean", f"experiments below {threshold:.0%}"], rows,
                             text_columns=1))
    required = set((definition.get("metrics") or {}).get("required", []))
    if required and not finished.empty:
        present = metrics.groupby("experiment_id")["name"].agg(set) if not metrics.empty else pd.Series(dtype=object)
        missing = [(e, sorted(required - present.get(e, set()))) for e in finished["experiment_id"]]
        missing = [(e, names) for e, names in missing if names]
        parts.append(f"<p>Required metrics ({escape(', '.join(sorted(required)))}) missing in {len(missing)} "
                     f"finished experiment(s).</p>")
    return "".join(parts)


def provenance(attempts: pd.DataFrame) -> str:
    parts = ["<h2>Provenance</h2>"]
    if attempts.empty:
        return parts[0] + "<p>No attempts recorded.</p>"
    outcomes = attempts["outcome"].value_counts()
    parts.append("<p>Attempts: " + ", ".join(f"{escape(str(k))} {v}" for k, v in outcomes.items()) + ".</p>")
    counted = attempts[attempts["counted"].fillna(False).astype(bool)]
    facts = pd.json_normalize(list(counted["facts"])) if not counted.empty else pd.DataFrame()
    if facts.empty:
        return "".join(parts) + "<p>No provenance facts recorded for the counted attempts.</p>"
    rows = []
    for key in sorted(facts.columns):
        values = facts[key].map(lambda v: v if isinstance(v, str | int | float | bool) or v is None else str(v))
        counts = values.astype(str).value_counts()
        listed = "; ".join(f"{escape(v[:80])} ({n})" for v, n in counts.head(4).items())
        rows.append([escape(key), str(len(counts)), listed + (" ..." if len(counts) > 4 else "")])
    parts.append("<p>Facts recorded by the attempts whose data counts (distinct values with how many attempts; "
                 "more than one value means the setup changed during the suite):</p>")
    parts.append(table(["fact", "distinct values", "values (attempts)"], rows, text_columns=3))
    return "".join(parts)


def generator(attempts: pd.DataFrame, parameters: Sequence[str]) -> str:
    """Per attempt: JMeter engines' CPU use and, in open loop, achieved vs intended arrivals; bottlenecks flagged."""
    title = "<h2>Load generator</h2>"
    records = [(r, r["facts"].get("load", {}).get("generator")) for _, r in attempts.iterrows()
               if isinstance(r["facts"], dict)] if not attempts.empty else []
    records = [(r, g) for r, g in records if g]
    if not records:
        return title + "<p>No attempt recorded its generator's CPU use.</p>"
    rows, classes = [], []
    for r, g in records:
        shares = ", ".join(f"{escape(name)} {share:.0%}" if share is not None else f"{escape(name)} not measured"
                           for name, share in g["cpu_share"].items())
        rate = (f"{g['achieved_rate_per_s']:g} of {g['intended_rate_per_s']:g}" if g.get("intended_rate_per_s")
                else "&ndash;")
        rows.append([escape(r["experiment_id"][:8]), str(r["repetition"]), *[fmt(r[p]) for p in parameters],
                     "yes" if r["counted"] else "no", shares, rate,
                     escape("; ".join(g["reasons"])) if g["saturated"] else "no"])
        classes.append("flagged" if g["saturated"] else "")
    flagged = sum(1 for _, g in records if g["saturated"])
    note = (f"<p>CPU share: CPU seconds during the run / (run wall time x {records[0][1]['cores']} cores); an engine "
            f"at {records[0][1]['cpu_share_cap']:.0%} or more, or fewer than 95 % of the intended open-loop "
            f"arrivals, flags the attempt: <b>{flagged}</b> of {len(records)} flagged.</p>")
    return title + note + table(["experiment", "repetition", *parameters, "counted", "CPU share per engine",
                                 "arrivals/s sent of intended", "generator bottleneck"], rows, text_columns=1,
                                row_classes=classes)


def abandoned(experiments: pd.DataFrame, attempts: pd.DataFrame, parameters: Sequence[str]) -> str:
    """Experiments whose failed attempts reached the suite's max_attempts, each with every attempt's error."""
    given_up = experiments[experiments["status"] == "abandoned"] if not experiments.empty else experiments
    title = f"<h2>Abandoned experiments ({len(given_up)})</h2>"
    if given_up.empty:
        return title + "<p>None: no experiment reached the suite's max_attempts failed attempts.</p>"
    rows = []
    for _, r in given_up.iterrows():
        tried = attempts[attempts["experiment_id"] == r["experiment_id"]] if not attempts.empty else attempts
        errors = "<br>".join(f"attempt {a['attempt_id']} ({escape(str(a['outcome']))}, run "
                             f"{escape(str(a['run_id']))}): {escape(str(a['error'] or ''))[:300]}"
                             for _, a in tried.iterrows())
        rows.append([escape(r["experiment_id"]), str(r["scenario_index"]), *[fmt(r[p]) for p in parameters],
                     str(r["repetition"]), errors])
    return (title + "<p>No run selects these again; raising <code>max_attempts</code> in the suite file makes "
            "them unfinished.</p>" + table(["experiment", "scenario #", *parameters, "repetition",
                                             "attempts and their errors"], rows, text_columns=1))


def unfinished(experiments: pd.DataFrame, parameters: Sequence[str]) -> str:
    open_ones = experiments[experiments["status"] == "unfinished"] if not experiments.empty else experiments
    title = f"<h2>Unfinished experiments ({len(open_ones)})</h2>"
    if open_ones.empty:
        return title + "<p>None: every planned experiment is finished.</p>"
    rows = [[escape(r["experiment_id"]), str(r["scenario_index"]), *[fmt(r[p]) for p in parameters],
             str(r["repetition"]), str(r["attempts"]), fmt(r["last_outcome"]),
             escape(str(r["last_error"] or ""))[:300]] for _, r in open_ones.iterrows()]
    return title + table(["experiment", "scenario #", *parameters, "repetition", "attempts", "last outcome",
                          "last error"], rows, text_columns=1)

