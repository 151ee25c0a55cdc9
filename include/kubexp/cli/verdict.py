"""`kubexp verdict SUITE` (SLOs per scenario) and `kubexp compare SUITE` (candidate vs baseline): answers for CI.

Both read the results database (KUBEXP_DATABASE_URL, default: the local services'), print one line per
judged item, write JUnit XML / JSON / Markdown on request and exit 1 on a miss or a regression.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kubexp.cli import main
from kubexp.cli.report import suite_name

if TYPE_CHECKING:
    import psycopg

_FILE = click.Path(dir_okay=False, path_type=Path)


def _outputs(function: Any) -> Any:
    for option in (click.option("--markdown", "markdown_path", type=_FILE, help="Write Markdown (a PR comment)."),
                   click.option("--json", "json_path", type=_FILE, help="Write the result as JSON."),
                   click.option("--junit", "junit_path", type=_FILE, help="Write JUnit XML (one test case each).")):
        function = option(function)
    return function


def _until_options(function: Any) -> Any:
    for option in (
            click.option("--timeout", default=86400.0, show_default=True,
                         help="Seconds to wait for each round's backfill with --until-decided."),
            click.option("--max-repetitions", type=click.IntRange(min=1),
                         help="With --until-decided: the most repetitions a scenario may plan."),
            click.option("--until-decided", is_flag=True,
                         help="Run the suite's unfinished experiments, then add repetitions to undecided scenarios "
                              "and run them through Airflow (backfill) until decided or --max-repetitions.")):
        function = option(function)
    return function


def _repeat(name: str, until_decided: bool, max_repetitions: int | None, timeout: float,
            undecided: Callable[[psycopg.Connection], Sequence[str]]) -> dict[str, Any] | None:
    """With --until-decided: the rounds of repetitions (kubexp.orchestration.until_decided), as JSON."""
    if not until_decided:
        if max_repetitions is not None:
            raise click.BadParameter("only with --until-decided", param_hint="--max-repetitions")
        return None
    if max_repetitions is None:
        raise click.BadParameter("--until-decided needs a budget, e.g. --max-repetitions 10",
                                 param_hint="--max-repetitions")
    from kubexp.orchestration import suite_dag
    from kubexp.orchestration.airflow_api import AirflowApiError, AirflowClient
    from kubexp.orchestration.until_decided import run_slots
    from kubexp.orchestration.until_decided import until_decided as repeat
    from kubexp.store import db

    client = AirflowClient.from_env()
    try:
        outcome = repeat(name, undecided, max_repetitions, say=click.echo,
                         run=lambda count: run_slots(client, suite_dag.dag_id(name), count, timeout_s=timeout))
    except (AirflowApiError, db.StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    return outcome.to_json()


def _rounds_text(rounds: dict[str, Any] | None) -> list[str]:
    if rounds is None:
        return []
    return [f"Repetitions until decided: {len(rounds['rounds'])} round(s), "
            f"{sum(r['finished'] for r in rounds['rounds'])} experiment(s) finished; {rounds['stopped']}."]


def _counts(outcomes: list[str], order: tuple[str, ...]) -> dict[str, int]:
    found = Counter(outcomes)
    return {outcome: found.get(outcome, 0) for outcome in order}


@main.command()
@click.argument("suite")
@_outputs
@_until_options
def verdict(suite: str, junit_path: Path | None, json_path: Path | None, markdown_path: Path | None,
            until_decided: bool, max_repetitions: int | None, timeout: float) -> None:
    """Judge every scenario x SLO of SUITE (a name or file) over its finished experiments: met, missed or
    undecided, from the interval of the median of the per-experiment values. Exit 1 when an SLO is missed."""
    from kubexp.analysis import ci_output, slo
    from kubexp.store import db

    name = suite_name(suite)

    def undecided(conn: psycopg.Connection) -> list[str]:
        slo.evaluate_suite(conn, name)
        return [case.scenario_id for case in slo.verdict(conn, name) if case.outcome == "undecided"]

    try:
        with db.connect() as conn:
            if not slo.suite_slos(conn, name):
                raise click.ClickException(
                    f"suite {name} has no `slo` section (as last loaded into the store); add one to its file "
                    f"(docs/suites.md, section SLOs) and load it with `kubexp suite load FILE`")
        rounds = _repeat(name, until_decided, max_repetitions, timeout, undecided)
        with db.connect() as conn:
            slo.evaluate_suite(conn, name)
            cases = slo.verdict(conn, name)
    except (LookupError, db.StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = _counts([case.outcome for case in cases], ("met", "missed", "undecided"))
    for case in cases:
        click.echo(f"{case.outcome:<9} {case.scenario_label}  {case.slo}: {case.judgement.reason}")
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    click.echo(f"verdict {name}: {summary}")
    status: dict[str, ci_output.Status] = {"met": "passed", "missed": "failed", "undecided": "skipped"}
    junit_cases = [ci_output.Case(f"{name}.{case.scenario_label}", f"{case.slo}: {case.figure} {case.bound}",
                                  status[case.outcome], case.outcome, case.judgement.reason)
                   for case in cases]
    rows = [(case.outcome, case.scenario_label, case.slo, f"{case.figure} {case.bound}",
             "-" if case.judgement.interval is None else f"{case.judgement.interval.median:.4g}",
             "-" if case.judgement.interval is None or case.judgement.interval.low is None
             else f"[{case.judgement.interval.low:.4g}, {case.judgement.interval.high:.4g}]",
             len(case.values)) for case in cases]
    ci_output.write_outputs(
        junit_path, json_path, markdown_path,
        junit_text=ci_output.junit(f"kubexp verdict {name}", junit_cases),
        document={"suite": name, "command": "verdict", "counts": counts, "cases": [c.to_json() for c in cases],
                  "until_decided": rounds},
        markdown_text=ci_output.markdown(
            f"kubexp verdict {name}: {summary}",
            ["An SLO is met when the whole interval of the median of its per-experiment values is within the "
             "bound, missed when it is wholly outside, undecided otherwise.", *_rounds_text(rounds)],
            ["outcome", "scenario", "SLO", "bound", "median", "interval", "experiments"], rows))
    if counts["missed"]:
        raise SystemExit(1)


def _margin(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a share; give e.g. 5% or 0.05", param_hint="--margin") from None
    if not 0 < value < 1:
        raise click.BadParameter(f"{text} is outside (0 %, 100 %)", param_hint="--margin")
    return value


@main.command()
@click.argument("suite")
@click.option("--factor", required=True, help="The matrix parameter whose levels are compared.")
@click.option("--baseline", required=True, help="The baseline level of the factor, as in the suite file.")
@click.option("--candidate", required=True, help="The candidate level of the factor, as in the suite file.")
@click.option("--margin", "margin_text", default="5%", show_default=True,
              help="Differences within this share count as equivalent (5% or 0.05).")
@_outputs
@_until_options
def compare(suite: str, factor: str, baseline: str, candidate: str, margin_text: str, junit_path: Path | None,
            json_path: Path | None, markdown_path: Path | None, until_decided: bool, max_repetitions: int | None,
            timeout: float) -> None:
    """Judge the candidate level of a matrix factor against the baseline on every combination of the other
    parameters: better, worse, equivalent (within the margin) or inconclusive, from an interval on the ratio of
    the median successful responses/s over experiments (method: kubexp.analysis.gate, docs/ci.md). Exit 1 when
    the candidate is worse anywhere."""
    from kubexp.analysis import ci_output, gate
    from kubexp.store import db

    name = suite_name(suite)
    margin = _margin(margin_text)

    def undecided(conn: psycopg.Connection) -> list[str]:
        return [scenario for c in gate.compare(conn, name, factor, baseline, candidate, margin=margin)
                if c.outcome == "inconclusive" for scenario in (c.baseline_scenario, c.candidate_scenario)]

    try:
        if until_decided:
            with db.connect() as conn:
                gate.compare(conn, name, factor, baseline, candidate, margin=margin)  # bad input fails before runs
        rounds = _repeat(name, until_decided, max_repetitions, timeout, undecided)
        with db.connect() as conn:
            comparisons = gate.compare(conn, name, factor, baseline, candidate, margin=margin)
    except (gate.CompareError, db.StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not comparisons:
        raise click.ClickException(f"suite {name}: no combination has both {factor}={baseline} and "
                                   f"{factor}={candidate} among its active scenarios")
    counts = _counts([c.outcome for c in comparisons], ("better", "worse", "equivalent", "inconclusive"))
    what = f"{factor}={candidate} vs {factor}={baseline}"
    for comparison in comparisons:
        click.echo(f"{comparison.outcome:<12} {comparison.label}: {comparison.decision.reason}")
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    click.echo(f"compare {name} {what}: {summary}")
    status: dict[str, ci_output.Status] = {"better": "passed", "equivalent": "passed", "worse": "failed",
                                           "inconclusive": "skipped"}
    junit_cases = [ci_output.Case(f"{name}.compare.{factor}", f"{what} at {c.label}", status[c.outcome], c.outcome,
                                  c.decision.reason) for c in comparisons]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [(c.outcome, c.label, fmt(c.decision.ratio),
             "-" if c.decision.low is None else f"[{fmt(c.decision.low)}, {fmt(c.decision.high)}]",
             f"{len(c.baseline)} / {len(c.candidate)}") for c in comparisons]
    ci_output.write_outputs(
        junit_path, json_path, markdown_path,
        junit_text=ci_output.junit(f"kubexp compare {name}", junit_cases,
                                   properties={"factor": factor, "baseline": baseline, "candidate": candidate,
                                               "margin": f"{margin:g}"}),
        document={"suite": name, "command": "compare", "factor": factor, "baseline": baseline,
                  "candidate": candidate, "margin": margin, "figure": gate.FIGURE, "method": gate.METHOD,
                  "counts": counts, "comparisons": [c.to_json() for c in comparisons], "until_decided": rounds},
        markdown_text=ci_output.markdown(
            f"kubexp compare {name}: {what}: {summary}",
            [f"Ratio candidate / baseline of the median successful responses/s over experiments, margin "
             f"{margin:.1%}. {gate.METHOD}", *_rounds_text(rounds)],
            ["outcome", "combination", "ratio", "interval", "experiments (baseline / candidate)"], rows))
    if counts["worse"]:
        raise SystemExit(1)
