"""What a suite's Airflow DAG looks like from outside: its id, its slots, its trigger form and its docs.

Kept apart from the steps (kubexp.experiment) so the CLI, the plugin page and the DAG file agree on
names without importing Airflow.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubexp.settings import SUITES_DIR
from kubexp.store.chains import DEFAULT_MAX_FAILED_RUNS
from kubexp.suite import Suite, load_suite, overridable, overrides_schema, suite_files

# Slot k of every suite DAG has the logical date SLOT_START + (k-1) days; the window is in the past,
# so the scheduler (catchup off) creates no run by itself and backfill fills the slots.
SLOT_START = datetime(2000, 1, 1, tzinfo=UTC)
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def suites_dir() -> Path:
    """The folder the DAG factory reads: KUBEXP_SUITES_DIR, else include/suites."""
    return Path(os.environ.get("KUBEXP_SUITES_DIR") or SUITES_DIR)


def dag_id(suite_name: str) -> str:
    """A suite's DAG id is the suite name (one suite = one DAG)."""
    return suite_name


def find_suite(name_or_path: str) -> Suite:
    """A suite by name (in the suites folder) or by file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_suite(path)
    for candidate in suite_files(suites_dir()):
        if candidate.stem == name_or_path:
            suite = load_suite(candidate)
            if suite.name == name_or_path:
                return suite
    for candidate in suite_files(suites_dir()):
        suite = load_suite(candidate)
        if suite.name == name_or_path:
            return suite
    raise LookupError(f"no suite named {name_or_path!r} in {suites_dir()} (KUBEXP_SUITES_DIR); "
                      f"give a suite name or the path of a suite file")


def slot_count(suite: Suite) -> int:
    return len(suite.scenarios()) * suite.repetitions


def slot_end(suite: Suite) -> datetime:
    return SLOT_START + timedelta(days=slot_count(suite) - 1)


def slot_of(logical_date: datetime) -> int:
    return (logical_date - SLOT_START).days + 1


def _scenario_label(suite: Suite, params: dict[str, Any], index: int) -> str:
    varied = ", ".join(f"{key}={params[key]}" for key in suite.matrix)
    return f"#{index} {varied}" if varied else f"#{index}"


def trigger_params(suite: Suite) -> dict[str, Any]:
    """The DAG's Params, with JSON Schema, as the trigger form shows them."""
    from airflow.sdk import Param

    scenarios = suite.scenarios()
    return {
        "scenario": Param(
            None, type=["null", "string"], title="Force a scenario",
            enum=[None, *(s.id for s in scenarios)],
            values_display={None: "(balanced choice)",
                            **{s.id: _scenario_label(suite, s.params, s.index) for s in scenarios}},
            description="Run an unfinished experiment of this scenario instead of the balanced choice.",
        ),
        "experiment": Param(
            None, type=["null", "string"], pattern=UUID_PATTERN, title="Force an experiment (UUID)",
            description="Run this unfinished experiment of the suite (see the store or the kubexp page).",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run",
            description="Pick the experiment and run the preflight checks, then stop: nothing is deployed, "
                        "no attempt is recorded.",
        ),
        "until_done": Param(
            False, type="boolean", title="Until done",
            description="At the end of this run, start the next one, one at a time, until every experiment is "
                        "finished or abandoned (max_attempts), an error needs a fix, max_failed_runs runs in a row "
                        "failed, the deadline passed or the DAG is paused; each run's note says which.",
        ),
        "max_failed_runs": Param(
            DEFAULT_MAX_FAILED_RUNS, type="integer", minimum=1, title="Until done: failed runs in a row",
            description="A chain of runs until done stops after this many failed runs in a row.",
        ),
        "deadline": Param(
            None, type=["null", "string"], format="date-time", pattern=DATE_TIME_PATTERN, title="Until done: deadline",
            description="A chain of runs until done starts no run after this time (ISO 8601, e.g. "
                        "2026-12-24T18:00:00Z); empty: none.",
        ),
        "overrides": Param(
            {}, title="Overrides", description="Suite settings to override for this run only (recorded in "
            f"provenance), only these: {', '.join(overridable())}. Scenario parameters, the plan, the load "
            f"servers and Prometheus come from the suite file only.",
            **overrides_schema(),
        ),
    }


def dag_doc(suite: Suite) -> str:
    """Markdown shown on the DAG page: the suite, its matrix and how to read progress."""
    scenarios = suite.scenarios()
    columns = list(suite.matrix)
    header = "| # | scenario id | " + " | ".join(columns) + " |"
    rule = "|---|---|" + "---|" * len(columns)
    rows = [f"| {s.index} | `{s.id}` | " + " | ".join(str(s.params[c]) for c in columns) + " |"
            for s in scenarios[:50]]
    if len(scenarios) > 50:
        rows.append(f"| ... | {len(scenarios) - 50} more | " + " | " * len(columns))
    fixed = {k: v for k, v in scenarios[0].params.items() if k not in suite.matrix}
    total = slot_count(suite)
    return f"""\
### Suite `{suite.name}`

{suite.description}

File `{suite.path.name}` - platform **{suite.platform}**, cluster **{suite.cluster}**, seed {suite.seed}:
{len(scenarios)} scenarios x {suite.repetitions} repetitions = **{total} experiments**.

Fixed parameters: `{json.dumps(fixed, sort_keys=True)}`

{header}
{rule}
{chr(10).join(rows)}

### How to read progress

- One DAG run = one experiment. The `select` task's log and its XCom `experiment` name the experiment,
  scenario and attempt; the run ends at `suite_complete` when every experiment is finished.
- A failed run leaves its experiment unfinished (the attempt is recorded as failed with its reason);
  a later run reattempts it. `cleanup` always runs: it removes the app and releases the cluster lock.
- Slots: the schedule is daily over {SLOT_START:%Y-%m-%d} .. {slot_end(suite):%Y-%m-%d}, one logical date per
  experiment (slot k = {SLOT_START:%Y-%m-%d} + k-1 days). The scheduler creates no run by itself; **Trigger ->
  Backfill** with *Missing Runs* fills never-run slots, *Missing and Errored Runs* also reruns failed ones.
  Each slot's run takes the next experiment by the balancing rule, not a fixed one.
- **Until done**: trigger with *Until done* on and this run starts the next one at its end, one at a time,
  until the suite is complete (or nothing but abandoned experiments is left: `max_attempts`
  {suite.max_attempts}), an error needs a fix, too many runs in a row failed, the deadline passed or the DAG is
  paused. Each run's note says what its last branch, `until_done`, decided.
- Per-scenario counts (finished / unfinished / abandoned / failed attempts) and the latest chain of runs until
  done: the **kubexp suites** page in the menu.
"""
