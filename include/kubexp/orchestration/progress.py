"""Progress of every suite, for the kubexp page in the Airflow UI (plugins/kubexp_suites_page.py).

One entry per suite file: planned experiments, and from the store per scenario the finished,
unfinished, running experiments and failed attempts; where its report is.
"""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubexp import platform as platforms
from kubexp import settings
from kubexp.orchestration import suite_dag
from kubexp.suite import Suite, SuiteError, load_suite, suite_files


@dataclass(frozen=True)
class SuiteProgress:
    name: str
    dag_id: str
    description: str
    platform: str
    cluster: str
    planned: int  # scenarios x repetitions
    matrix_keys: list[str]
    status: dict[str, Any] | None = None  # store.status.suite_status, None before the first run
    recent_failures: list[dict[str, Any]] = field(default_factory=list)  # newest failed attempts
    error: str | None = None
    report: Path | None = None
    path: str = ""
    lease_key: str = ""
    notes: list[str] = field(default_factory=list)
    slo_cases: list[dict[str, Any]] = field(default_factory=list)  # kubexp.analysis.slo.SloCase.to_json, per case

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.name, "dag_id": self.dag_id, "description": self.description,
                "platform": self.platform, "cluster": self.cluster, "planned": self.planned, "path": self.path,
                "status": json.loads(json.dumps(self.status, default=str)) if self.status else None,
                "error": self.error, "report": str(self.report) if self.report else None,
                "recent_failures": self.recent_failures, "slo": self.slo_cases}


def reports_dir() -> Path:
    """Where `kubexp report` writes by default: <run folder>/reports/<suite>/report.html."""
    return settings.run_dir() / "reports"


def report_path(suite_name: str) -> Path | None:
    if not suite_name.replace("-", "").isalnum():
        return None  # names are [a-z0-9-]; anything else must never reach the file system
    path = reports_dir() / suite_name / "report.html"
    return path if path.is_file() else None


def build_report(suite_name: str) -> Path:
    """Build a suite's report into the default folder (for the page's button)."""
    from kubexp.analysis.report import build_report as build
    from kubexp.store import db

    if suite_name not in {entry.name for entry in all_suites(with_status=False)}:
        raise LookupError(f"no suite named {suite_name!r} in {suite_dag.suites_dir()}")
    with db.connect() as conn:
        return build(conn, suite_name, reports_dir() / suite_name).path


def recent_failures(conn: Any, suite_name: str, limit: int = 3) -> list[dict[str, Any]]:
    """The newest failed or abandoned attempts of a suite, with their run and error."""
    rows = conn.execute(
        "SELECT a.id, a.run_id, a.ended_at, a.outcome, a.error FROM attempt a JOIN experiment e "
        "ON e.id = a.experiment_id WHERE e.suite = %s AND a.outcome IN ('failed', 'abandoned') "
        "ORDER BY a.id DESC LIMIT %s", (suite_name, limit)).fetchall()
    return [{"attempt": row[0], "run_id": row[1], "ended_at": str(row[2]), "outcome": row[3], "error": row[4] or ""}
            for row in rows]


def _entry(suite: Suite) -> SuiteProgress:
    return SuiteProgress(
        name=suite.name, dag_id=suite_dag.dag_id(suite.name), description=suite.description,
        platform=suite.platform, cluster=suite.cluster, planned=suite_dag.slot_count(suite),
        matrix_keys=list(suite.matrix), report=report_path(suite.name), path=str(suite.path),
        lease_key=platforms.lease_key(suite))


def all_suites(with_status: bool = True) -> list[SuiteProgress]:
    entries: list[SuiteProgress] = []
    for path in suite_files(suite_dag.suites_dir()):
        try:
            entries.append(_entry(load_suite(path)))
        except SuiteError as exc:
            entries.append(SuiteProgress(name=path.stem, dag_id="", description="", platform="?", cluster="?",
                                         planned=0, matrix_keys=[], error=str(exc), path=str(path)))
    if not with_status:
        return entries
    from kubexp.analysis import slo
    from kubexp.store import db, status
    from kubexp.store.db import StoreError

    try:
        conn = db.connect()
    except StoreError as exc:
        return [dataclasses.replace(entry, error=entry.error or str(exc)) for entry in entries]
    with conn:
        result = []
        for entry in entries:
            if entry.error:
                result.append(entry)
                continue
            try:
                found = status.suite_status(conn, entry.name, lease_key=entry.lease_key)
            except StoreError:
                result.append(entry)  # never run: the first run loads it into the store
                continue
            result.append(dataclasses.replace(entry, status=found, recent_failures=recent_failures(conn, entry.name),
                                              slo_cases=[case.to_json() for case in slo.verdict(conn, entry.name)]))
        return result


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
td.l,th.l{text-align:left}
.bar{display:inline-block;height:.7rem;background:#2e7d32}
.err{color:#b00020;white-space:pre-wrap}
h2{margin-bottom:.2rem} .muted{color:#666}
"""


def _scenario_rows(entry: SuiteProgress) -> str:
    rows = []
    for row in (entry.status or {}).get("per_scenario", []):
        params = row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])
        varied = ", ".join(f"{key}={params.get(key)}" for key in entry.matrix_keys) or "-"
        share = row["finished"] / row["experiments"] if row["experiments"] else 0
        rows.append(
            f"<tr><td>{row['index']}</td><td class=l><code>{html.escape(row['scenario_id'])}</code></td>"
            f"<td class=l>{html.escape(varied)}</td><td>{row['finished']}</td><td>{row['unfinished']}</td>"
            f"<td>{row['running']}</td><td>{row['abandoned']}</td><td>{row['failed_attempts']}</td>"
            f"<td class=l><span class=bar style='width:{share * 6:.2f}rem'></span> {share:.0%}</td></tr>")
    return "".join(rows)


def _slo_section(entry: SuiteProgress) -> str:
    """The SLO verdict per scenario, as `kubexp verdict` gives it from the stored values."""
    if not entry.slo_cases:
        return ""
    counts = {o: sum(c["outcome"] == o for c in entry.slo_cases) for o in ("met", "missed", "undecided")}
    rows = "".join(
        f"<tr><td class=l{' style=color:#b00020' if case['outcome'] == 'missed' else ''}>{case['outcome']}</td>"
        f"<td>{case['scenario_index']}</td><td class=l>{html.escape(case['slo'])}</td>"
        f"<td class=l>{html.escape(case['figure'] + ' ' + case['bound'])}</td><td>{case['experiments']}</td>"
        f"<td class=l>{html.escape(case['reason'])}</td></tr>" for case in entry.slo_cases)
    return ("<p>SLOs: " + ", ".join(f"{n} {o}" for o, n in counts.items())
            + " (<code>kubexp verdict</code>)</p><table><tr><th class=l>outcome</th><th>#</th><th class=l>SLO</th>"
            "<th class=l>bound</th><th>experiments</th><th class=l>why</th></tr>" + rows + "</table>")


def _suite_section(entry: SuiteProgress) -> str:
    name = html.escape(entry.name)
    head = f"<h2>{name}</h2>"
    if entry.error:
        return head + f"<p class=err>{html.escape(entry.error)}</p>"
    links = f"<a href='../dags/{html.escape(entry.dag_id)}' target=_top>DAG</a>"
    if entry.report:
        links += f" &middot; <a href='reports/{name}' target=_blank>report</a>"
    if entry.status is not None:
        links += (f" <form method=post action='reports/{name}' style='display:inline'>"
                  f"<button type=submit>{'rebuild' if entry.report else 'build'} report</button></form>")
    summary = (f"<p class=muted>{html.escape(entry.description)}<br>platform {html.escape(entry.platform)}, "
               f"cluster {html.escape(entry.cluster)}, {entry.planned} experiments planned &middot; {links}</p>")
    status = entry.status
    if status is None:
        return head + summary + "<p>Not run yet: the first run of its DAG loads it into the store.</p>"
    lock = status.get("lock")
    totals = (f"<p><b>{status['finished']}</b> of {status['experiments']} finished, {status['unfinished']} "
              f"unfinished ({status['running']} running), {status['abandoned']} abandoned (max_attempts reached), "
              f"{status['failed_attempts']} failed attempts"
              + (f"; cluster held by <code>{html.escape(lock['holder'])}</code>" if lock else "") + "</p>")
    table = ("<table><tr><th>#</th><th class=l>scenario</th><th class=l>parameters</th><th>finished</th>"
             "<th>unfinished</th><th>running</th><th>abandoned</th><th>failed attempts</th>"
             "<th class=l>progress</th></tr>"
             + _scenario_rows(entry) + "</table>")
    failures = "".join(
        f"<li>attempt {failure['attempt']} ({html.escape(failure['outcome'])}, run "
        f"<code>{html.escape(failure['run_id'])}</code>, {html.escape(failure['ended_at'][:19])}): "
        f"<span class=err>{html.escape(failure['error'][:600])}</span></li>" for failure in entry.recent_failures)
    latest = f"<p>Latest failed attempts:</p><ul>{failures}</ul>" if failures else ""
    return head + summary + totals + _chain(status.get("chain")) + table + _slo_section(entry) + latest


def _chain(chain: dict[str, Any] | None) -> str:
    """The newest chain of runs until done: running or why it stopped, its runs so far and latest note."""
    if not chain:
        return ""
    runs = f"{chain['runs']} runs ended so far ({chain['failed_runs']} failed)"
    if chain["running"]:
        state = f"<b>running</b>, now run <code>{html.escape(str(chain['current_run_id']))}</code>"
    else:
        state = (f"<b>stopped</b> {html.escape(str(chain['stopped_at'])[:19])}: "
                 f"<code>{html.escape(str(chain['stop_reason']))}</code>, {html.escape(str(chain['stop']))}")
    note = f"<br><span class=muted>{html.escape(chain['note'])}</span>" if chain["note"] else ""
    return f"<p>Until done chain <code>{html.escape(chain['id'])}</code>: {state}; {runs}{note}</p>"


def render_page(entries: list[SuiteProgress]) -> str:
    """The page; its links are relative to where it is served (…/kubexp/), so a proxy prefix works."""
    body = "".join(_suite_section(entry) for entry in entries) or (
        f"<p>No suite files in {html.escape(str(suite_dag.suites_dir()))}.</p>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>kubexp suites</title>"
            f"<style>{_STYLE}</style></head><body><h1>kubexp suites</h1>{body}</body></html>")
