"""The steps of one experiment; each function is one task of a suite's DAG (dags/kubexp_suites.py).

The steps pass one small dict between them (the *current* experiment: ids, parameters, where raw
files go), which Airflow carries as an XCom; each step rebuilds the suite and its platform from it
once (cached on `Current`), so every step can run in its own process, on a retry, after a crash.
The store is the record: a failing step leaves the experiment unfinished and its attempt closed
as failed with the reason, and `cleanup` always runs. Raw files are archived as soon as they exist,
and collected data is stored in one transaction, so a crash anywhere never loses or half-writes data.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg

from kubexp import platform as platforms
from kubexp import postconditions, settings
from kubexp import preflight as preflight_checks
from kubexp.load import ramdisk
from kubexp.store import attempts, chains, db, migrations, selection, suites
from kubexp.suite import OVERRIDABLE, Suite, SuiteError, load_suite, overridable, typed_section

log = logging.getLogger(__name__)

class ExperimentError(RuntimeError):
    """A step cannot go on; the message names the experiment, the step and what to do."""


class IncompleteData(ExperimentError):
    """Finalize refused the attempt's data (postconditions): retrying the step cannot help, a later run
    reattempts the experiment from scratch (so a chain of runs until done goes on)."""


def lock_holder(dag_id: str, run_id: str) -> str:
    return f"{dag_id}/{run_id}"


def lease_s(suite: Suite) -> int:
    """How long the cluster lock lasts without renewal: longer than any single step (the load).

    The same span after which the store reclaims a silent attempt: every step renews both."""
    return max(s.params["duration_s"] for s in suite.scenarios()) + selection.STALE_MARGIN_S


@dataclass(frozen=True)
class RunRef:
    """The Airflow run executing a step."""

    dag_id: str
    run_id: str
    try_number: int

    @classmethod
    def of(cls, dag_run: Any, ti: Any) -> RunRef:
        return cls(dag_id=dag_run.dag_id, run_id=dag_run.run_id, try_number=int(ti.try_number or 1))

    @property
    def holder(self) -> str:
        return lock_holder(self.dag_id, self.run_id)


@dataclass(frozen=True)
class Current:
    """The experiment a run works on, as it travels between the steps (JSON-serialisable)."""

    suite_path: str
    holder: str
    run_id: str
    experiment_id: str
    attempt_id: int | None  # None in a dry run: nothing is recorded
    scenario_id: str
    repetition: int
    params: dict[str, Any]
    results_dir: str
    dry_run: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Current:
        return cls(**data)

    # Read once per task: a step's Current is built once (`_current`) and asked many times.
    @cached_property
    def suite(self) -> Suite:
        return apply_overrides(load_suite(self.suite_path), self.overrides)

    @cached_property
    def platform(self) -> platforms.Platform:
        return platforms.create(self.suite)

    @property
    def label(self) -> str:
        return f"experiment {self.experiment_id} (scenario {self.scenario_id}, repetition {self.repetition})"


def apply_overrides(suite: Suite, overrides: Mapping[str, Any]) -> Suite:
    """The suite with a run's overrides (allow_dirty, and the suite.OVERRIDABLE keys) merged in."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        unsafe = ([f"{key}.{name}" for name in value if name not in OVERRIDABLE[key]]
                  if key in OVERRIDABLE and isinstance(value, Mapping) else [] if key == "allow_dirty" else [key])
        if unsafe:
            raise ExperimentError(f"override {', '.join(unsafe)} is not allowed; allowed: {', '.join(overridable())}")
        if key == "allow_dirty":
            changes[key] = bool(value)
            continue
        try:
            changes[key] = typed_section(key, {**getattr(suite, key).given, **value},
                                         f"{suite.path} with the run's overrides")
        except SuiteError as exc:
            raise ExperimentError(str(exc)) from None
    return dataclasses.replace(suite, **changes)


@contextmanager
def _store() -> Iterator[psycopg.Connection]:
    with db.connect() as conn:
        yield conn


def _beat(conn: psycopg.Connection, current: Current) -> None:
    """Renew the cluster lease and the attempt's heartbeat; fail loudly if another run took over."""
    suite = current.suite
    key = platforms.lease_key(suite)
    if not selection.try_lock_cluster(conn, key, current.holder, lease_s(suite)):
        raise ExperimentError(
            f"cluster {suite.cluster!r} ({key}) is locked by another run: the lease of {current.holder} expired "
            f"(no step for {lease_s(suite)} s?); {current.label} is left for a later run")
    if current.attempt_id is not None:
        attempts.heartbeat(conn, current.attempt_id)


def _current(data: Mapping[str, Any]) -> Current:
    current = Current.from_xcom(data)
    with _store() as conn:
        _beat(conn, current)
    return current


# -- select -----------------------------------------------------------------------------------


_schema_ready: set[str] = set()


def _ensure_schema() -> None:
    """Apply the store's migrations once per process (idempotent): a fresh results database just works."""
    url = settings.database_url()
    if url not in _schema_ready:
        migrations.upgrade(url)
        _schema_ready.add(url)


def lock_cluster(suite_path: str | Path, dag_id: str, run_id: str) -> bool:
    """One poke of the cluster-lock sensor: True once this run holds the suite's cluster."""
    suite = load_suite(suite_path)
    _ensure_schema()
    with _store() as conn:
        taken = selection.try_lock_cluster(conn, platforms.lease_key(suite), lock_holder(dag_id, run_id),
                                           lease_s(suite))
    if not taken:
        log.info("cluster %s (%s) is busy (another experiment runs on it); waiting",
                 suite.cluster, platforms.lease_key(suite))
    return taken


def select(suite_path: str | Path, run: RunRef, params: Mapping[str, Any]) -> Current | None:
    """Pick the experiment this run works on and open its attempt; None when the suite is complete.

    params: the DAG run's params (scenario, experiment, dry_run, overrides). A dry run picks
    without claiming anything."""
    overrides = dict(params.get("overrides") or {})
    suite = apply_overrides(load_suite(suite_path), overrides)
    dry_run = bool(params.get("dry_run"))
    _ensure_schema()
    with _store() as conn:
        suites.sync_suite(conn, suite)
        if params.get("until_done") and not dry_run:
            _register_chain(conn, suite, run, params)
        # A dry run selects inside a transaction that is rolled back: no claim, no selection logged.
        with conn.transaction(force_rollback=dry_run):
            chosen = selection.resumed_claim(conn, suite, run.holder)  # a retry of a select killed after claiming
            if chosen is None and (params.get("experiment") or params.get("scenario")):
                try:
                    chosen = selection.claim_experiment(conn, suite, run.holder, scenario_id=params.get("scenario"),
                                                        experiment_id=params.get("experiment"),
                                                        stale_after_s=lease_s(suite))
                except selection.SelectionError as exc:  # the user's choice: retrying cannot help
                    raise ExperimentError(str(exc)) from exc
            elif chosen is None:
                chosen = selection.select_next_experiment(
                    conn, suite, run.holder, lease=(platforms.lease_key(suite), lease_s(suite)))
        if chosen is None:
            log.info("suite %s is complete: every experiment is finished, abandoned (max_attempts) or claimed by a "
                     "running attempt", suite.name)
            return None
        results = ramdisk.results_root(suite.load) / suite.name / chosen.experiment_id
        current = Current(
            suite_path=str(suite_path), holder=run.holder, run_id=run.run_id,
            experiment_id=chosen.experiment_id, attempt_id=None, scenario_id=chosen.scenario_id,
            repetition=chosen.repetition, params=dict(chosen.params), results_dir=str(results / "dry-run"),
            dry_run=dry_run, overrides=overrides,
        )
        if dry_run:
            log.info("dry run: would run %s with %s", current.label, current.params)
            return current
        attempt_id = attempts.open_attempt(conn, chosen.experiment_id, run.run_id, run.try_number,
                                           socket.gethostname())
        for earlier in attempts.supersede_earlier_tries(conn, chosen.experiment_id, run.run_id, run.try_number):
            log.warning("attempt %s of an earlier try of this run was still open: closed as failed", earlier)
        current = dataclasses.replace(current, attempt_id=attempt_id, results_dir=str(results / str(attempt_id)))
        try:
            attempts.record_provenance(conn, attempt_id, {
                "airflow": {"dag_id": run.dag_id, "run_id": run.run_id, "try_number": run.try_number},
                "selection": {"choice_seed": chosen.choice_seed, "fewest_finished": chosen.fewest_finished,
                              "tied_scenarios": list(chosen.tied_scenarios), "forced": _forced(params)},
                "suite": preflight_checks.suite_facts(suite), "overrides": overrides,
                "host": preflight_checks.host_facts(),
            })
        except Exception as exc:
            attempts.close_attempt(conn, attempt_id, "failed", f"select: recording provenance failed: {exc}")
            raise
    log.info("running %s as attempt %s: %s", current.label, attempt_id, current.params)
    return current


def _register_chain(conn: psycopg.Connection, suite: Suite, run: RunRef, params: Mapping[str, Any]) -> str:
    chain_id = str(params.get("chain") or run.run_id)
    chains.register(conn, chain_id, suite.name, run.dag_id, run.run_id, deadline=_deadline(params),
                    max_failed_runs=int(params.get("max_failed_runs") or chains.DEFAULT_MAX_FAILED_RUNS))
    return chain_id


def _deadline(params: Mapping[str, Any]) -> datetime | None:
    text = params.get("deadline")
    if not text:
        return None
    try:
        deadline = datetime.fromisoformat(str(text))
    except ValueError:
        raise ExperimentError(f"deadline {text!r} is not an ISO 8601 date and time (e.g. 2026-12-24T18:00:00Z)"
                              ) from None
    return deadline if deadline.tzinfo else deadline.replace(tzinfo=UTC)


# Keys of a run's conf that the next run of its chain gets (a forced scenario or experiment is not repeated).
CHAIN_CONF = ("until_done", "max_failed_runs", "deadline", "overrides")


def until_done(suite_path: str | Path, run: RunRef, params: Mapping[str, Any], *, failed: bool,
               needs_fix: str | None, paused: bool) -> tuple[chains.Decision, dict[str, Any]] | None:
    """The end of a run started with until_done: record whether it failed and decide what comes next.

    Returns None without until_done (or in a dry run, which never chains), else the decision and the conf of
    the next run (with `chain`: the chain's id, the first run's id). Idempotent per run."""
    if not params.get("until_done"):
        return None
    if params.get("dry_run"):
        log.info("dry run: until_done starts no chain")
        return None
    suite = load_suite(suite_path)
    _ensure_schema()
    with _store() as conn:
        suites.sync_suite(conn, suite)
        chain_id = _register_chain(conn, suite, run, params)
        decision = chains.recorded(conn, chain_id, run.run_id)
        if decision is None:
            count, in_a_row = chains.earlier_runs(conn, chain_id)
            decision = chains.decide(
                chain_id=chain_id, number=count + 1, failed=failed, failed_in_a_row=in_a_row + 1 if failed else 0,
                max_failed_runs=int(params.get("max_failed_runs") or chains.DEFAULT_MAX_FAILED_RUNS),
                needs_fix=needs_fix, progress=chains.progress(conn, suite.name), deadline=_deadline(params),
                now=datetime.now(UTC), paused=paused)
            decision = chains.record(conn, chain_id, run.run_id, failed, decision)
    log.info("%s", decision.note)
    conf = {key: params[key] for key in CHAIN_CONF if params.get(key) is not None}
    return decision, {**conf, "chain": chain_id}


def _forced(params: Mapping[str, Any]) -> dict[str, Any] | None:
    forced = {key: params[key] for key in ("scenario", "experiment") if params.get(key)}
    return forced or None


# -- preflight -------------------------------------------------------------------------------


def preflight(data: Mapping[str, Any]) -> dict[str, Any]:
    """Check everything an experiment relies on; raise PreflightError listing every problem.

    Returns the facts (recorded in provenance) with `plan`, a one-line summary."""
    current = _current(data)
    suite = current.suite
    facts = preflight_checks.run_all(suite, Path(current.results_dir), current.params)
    facts["plan"] = f"{current.label} with {current.params}"
    for warning in facts.get("warnings", []):
        log.warning("%s", warning)
    if current.attempt_id is not None:
        with _store() as conn:
            attempts.record_provenance(conn, current.attempt_id, {"preflight": facts})
    return facts


# -- nodes, teardown, etcd, deploy ----------------------------------------------------------------


def nodes_not_ready(data: Mapping[str, Any]) -> list[str]:
    """Names of the platform's nodes that are not Ready (empty: go on)."""
    current = _current(data)
    statuses = current.platform.check_nodes()
    bad = [node.name for node in statuses if not node.ready]
    for node in statuses:
        if not node.ready:
            log.warning("node %s is not Ready: %s", node.name, node.reason or "no reason given")
    return bad


def reboot_nodes(data: Mapping[str, Any]) -> list[str]:
    """Reboot every node that is not Ready through the platform (cloud API); returns their names."""
    current = _current(data)
    target = current.platform
    rebooted = [node.name for node in target.check_nodes() if not node.ready]
    for name in rebooted:
        warning = target.reboot_warning(name)
        if warning and current.attempt_id is not None:  # said before the reboot, where the attempt keeps it
            with _store() as conn:
                attempts.record_provenance(conn, current.attempt_id, {"reboot_warnings": {name: warning}})
        log.warning("rebooting node %s%s", name, f": {warning}" if warning else "")
        target.reboot_node(name)
    if current.attempt_id is not None and rebooted:
        with _store() as conn:
            attempts.record_provenance(conn, current.attempt_id, {"rebooted_nodes": rebooted})
    return rebooted


def teardown(data: Mapping[str, Any]) -> None:
    """Remove every trace of the SUT (and raw files of an earlier try of this attempt)."""
    current = _current(data)
    current.platform.teardown()
    shutil.rmtree(current.results_dir, ignore_errors=True)


def configure_etcd(data: Mapping[str, Any]) -> dict[str, Any]:
    """Put etcd on the scenario's storage, wait healthy; its fingerprint goes into provenance.

    With kubernetes.etcd.dry_run the platform only prints the commands: the experiment then stops here
    with an ExperimentError (never retried), since its data would not show the storage it claims."""
    current = _current(data)
    fingerprint = current.platform.configure_etcd(current.params, tag=f"attempt-{current.attempt_id}")
    with _store() as conn:
        attempts.record_provenance(conn, _attempt(current), {"etcd": fingerprint})
    if fingerprint.get("dry_run"):
        raise ExperimentError(
            f"{current.label}: kubernetes.etcd.dry_run is on in {current.suite_path}: the etcd commands were only "
            f"printed (see this task's log) and nothing was changed on the etcd members, so the experiment stops "
            f"here and stays unfinished. Set kubernetes.etcd.dry_run: false to run it.")
    return fingerprint


def deploy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Deploy the app for the scenario, then restart the load servers fresh (no state of an earlier experiment
    carries over) while the app starts: their JVMs start within its readiness period, which the rollout waits
    out anyway. The deploy's start time opens the window of platform events collected. Returns `load_servers`
    for the load step; a load server that cannot be restarted raises preflight's errors (a setting to fix:
    PreflightError; one that did not answer: ServiceUnavailable, retried)."""
    current = _current(data)
    target = current.platform
    with _store() as conn:
        attempts.record_provenance(conn, _attempt(current), {"deploy": {"started_at": datetime.now(UTC).isoformat()}})
    target.deploy(current.scenario_id, current.params)
    with _store() as conn:
        attempts.record_provenance(conn, _attempt(current), {"platform": target.fingerprint()})
    problems: list[str] = []
    unavailable: list[str] = []
    load_servers = preflight_checks.restart_load_servers(current.suite, problems, unavailable)
    if problems or unavailable:
        error = preflight_checks.PreflightError if problems else preflight_checks.ServiceUnavailable
        raise error(f"{current.label}: " + "; ".join(problems + unavailable))
    with _store() as conn:
        attempts.record_provenance(conn, _attempt(current), {"load_servers": load_servers})
    return {"load_servers": load_servers}


def rollout_ready(data: Mapping[str, Any]) -> bool:
    """One poke of the rollout sensor: replicas ready, a sanity request answered, and the SUT's scrape
    targets scraped since the deploy (else the first seconds of the load would have no metrics)."""
    from kubexp.collect import prometheus

    current = _current(data)
    target = current.platform
    if not target.rollout_ready(current.params):
        return False
    addresses = target.scrape_targets()
    if not addresses:
        return True
    with _store() as conn:
        deployed = attempts.provenance(conn, _attempt(current))["deploy"]["started_at"]
    pending = prometheus.unscraped(prometheus.local_instance(), addresses, datetime.fromisoformat(deployed))
    if pending:
        log.info("%s: rollout ready; waiting for Prometheus to scrape %s", current.label, ", ".join(pending))
    return not pending


def _attempt(current: Current) -> int:
    if current.attempt_id is None:
        raise ExperimentError(f"{current.label}: a dry run records no attempt and must not reach this step")
    return current.attempt_id


# -- load, collect, finalize ------------------------------------------------------------------


def run_load(data: Mapping[str, Any], deployed: Mapping[str, Any]) -> dict[str, Any]:
    """Run the JMeter plan for the scenario's duration; the JTL and JMeter's log are archived at once."""
    from kubexp.artifacts import archive
    from kubexp.load import jmeter, profiles, servers

    current = _current(data)
    suite = current.suite
    target = current.platform
    settle_s = profiles.settle_s_for(suite.load)
    if settle_s:
        # As the paper's authors did: the SUT rests between the sanity request and the load.
        log.info("load profile %s: waiting %d s (load.settle_s) before the load", suite.load.profile, settle_s)
        time.sleep(settle_s)
        _current(data)  # renew the lease and the heartbeat after the wait
    try:
        ramdisk.private_folder(ramdisk.results_root(suite.load))
    except ramdisk.PrivateFolderError as exc:
        raise ExperimentError(f"{current.label}: {exc}") from None
    loaded = jmeter.run_load(
        current.params, target.endpoint(), Path(current.results_dir), servers=deployed.get("load_servers") or None,
        plan=profiles.plan_for(suite.load, current.params), request_path=profiles.request_path_for(suite.load),
        sample_sender_mode=suite.load.sample_sender_mode,
        rmi_ssl=servers.rmi_ssl(suite),
    )
    kept = [archive(path, artifacts_dir(current)) for path in (loaded.jtl, loaded.log, loaded.output) if path.exists()]
    answered = target.sanity_after_load()
    sanity_after = None if answered is None else {"ok": answered[0], "detail": answered[1]}
    with _store() as conn:
        attempts.record_provenance(conn, _attempt(current), {"load": {
            "t0": loaded.t0.isoformat(), "ended_at": loaded.ended_at.isoformat(), "samples": loaded.samples,
            "profile": profiles.profile_of(suite.load).name, "settle_s": settle_s,
            "plan": str(loaded.plan), "servers": list(loaded.servers), "properties": loaded.properties,
            "generator": loaded.generator, "sanity_after": sanity_after}})
    if loaded.generator["saturated"]:
        log.warning("%s: the load generator was the bottleneck: %s", current.label,
                    "; ".join(loaded.generator["reasons"]))
    return {"jtl": str(loaded.jtl), "artifacts": [dataclasses.asdict(artifact) for artifact in kept],
            "t0": loaded.t0.isoformat(), "t0_ms": loaded.t0_ms, "ended_at": loaded.ended_at.isoformat(),
            "generator": loaded.generator, "sanity_after": sanity_after}


def artifacts_dir(current: Current) -> Path:
    """Where an attempt's raw files are kept (gzip + sha256 in the store): outside the RAM disk."""
    return settings.run_dir() / "artifacts" / current.experiment_id / str(_attempt(current))


def collect(data: Mapping[str, Any], load_run: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment's data from every collector (JTL, Prometheus, the platform's), stored in one go.

    Everything is normalised to t = 0 (the load start); storing replaces earlier rows of the
    experiment, so a retried collect never duplicates a row. Returns a summary for finalize."""
    from kubexp.collect import collect_all, prometheus, queries
    from kubexp.collect.jtl import JtlCollector
    from kubexp.load import jtl
    from kubexp.records import Artifact, Window
    from kubexp.store import ingest

    current = _current(data)
    suite = current.suite
    kept = [Artifact(**artifact) for artifact in load_run["artifacts"]]
    live = Path(load_run["jtl"])
    archived = next((a for a in kept if a.kind == "jtl" and Path(a.path).name == f"{live.name}.gz"), None)
    if archived is None:
        raise ExperimentError(f"{current.label}: the load step archived no JTL (its live copy was {live}); "
                              f"the experiment stays unfinished and a later run reattempts it")
    t0, end = datetime.fromisoformat(load_run["t0"]), datetime.fromisoformat(load_run["ended_at"])
    with _store() as conn:
        deployed = attempts.provenance(conn, _attempt(current)).get("deploy", {}).get("started_at")
    # Events from the deploy on (rollout, readiness: negative t) to the load's end.
    window = Window(t0=t0, start=datetime.fromisoformat(deployed) if deployed else t0, end=end,
                    dest_dir=artifacts_dir(current))
    load = JtlCollector(live, archived, kept, int(load_run["t0_ms"]), suite.load.max_malformed_share,
                        ramdisk.private_folder(ramdisk.results_root(suite.load)))
    collected = collect_all([load, prometheus.SuitePrometheus(suite), *current.platform.collectors(suite)], window)
    with _store() as conn:
        ingest.store_experiment_data(conn, current.experiment_id, _attempt(current), collected, t0=t0)
        attempts.record_provenance(conn, _attempt(current), {"collect": collected.facts})
    series, frame = collected.series or [], collected.load
    assert frame is not None  # the JTL collector's
    duration = int(current.params["duration_s"])
    # The stored completeness (ingest) by the same rule over the same seconds: the two cannot disagree.
    metric_problems = prometheus.completeness_problems(prometheus.completeness(series, duration),
                                                       queries.required_for(suite),
                                                       suite.metrics.completeness_min)
    inside = frame[(frame["t"] >= 0) & (frame["t"] < duration)]
    return {"rows": collected.facts["jtl"]["rows"], "malformed": collected.facts["jtl"]["malformed"],
            "seconds": jtl.loaded_seconds(frame, duration),  # seconds of [0, duration) with a request
            "requests": int(inside["requests"].sum()), "no_response": int(inside["failures_other"].sum()),
            "series": len(series), "events": len(collected.events or []), "artifacts": len(collected.artifacts or []),
            "metric_problems": metric_problems, "generator": load_run.get("generator"),
            "sanity_after": load_run.get("sanity_after")}


def finalize(data: Mapping[str, Any], collected: Mapping[str, Any]) -> None:
    """Check the postconditions, then mark the experiment finished (its data are the attempt's)."""
    from kubexp.store import experiments

    current = Current.from_xcom(data)
    with _store() as conn:
        already = _outcome(conn, _attempt(current)) == "succeeded"  # a retry after the commit went through
        if not already:
            _beat(conn, current)
    if already:
        log.info("%s was already finished by attempt %s", current.label, current.attempt_id)
    else:
        problems = postconditions.postconditions(current.suite, current.params, collected)
        if problems:
            raise IncompleteData(f"{current.label}: postconditions failed: " + "; ".join(problems)
                                 + ". The experiment stays unfinished; a later run reattempts it.")
        with _store() as conn:
            experiments.finish_experiment(conn, current.experiment_id, _attempt(current))  # attempt -> succeeded
        log.info("%s finished (attempt %s)", current.label, current.attempt_id)
    if current.suite.slo:
        _evaluate_slos(current)


def _evaluate_slos(current: Current) -> None:
    """Store the finished experiment's SLO values. An SLO makes a verdict, never an unfinished experiment:
    a failure here is logged, and `kubexp verdict` computes what is missing."""
    from kubexp.analysis import slo

    try:
        with _store() as conn:
            slo.evaluate(conn, current.suite.slo, [current.experiment_id])
    except (psycopg.Error, ValueError) as exc:
        log.warning("%s: SLO values not stored (%s); `kubexp verdict %s` computes them", current.label, exc,
                    current.suite.name)


# -- failure and cleanup ---------------------------------------------------------------------------


def fail(data: Mapping[str, Any] | None, reason: str) -> None:
    """Close the run's attempt as failed with the reason (no-op without an attempt or once closed)."""
    if not data or data.get("attempt_id") is None:
        return
    current = Current.from_xcom(data)
    with _store() as conn:
        attempts.close_attempt(conn, _attempt(current), "failed", reason[:4000])
    log.warning("%s: attempt %s failed: %s", current.label, current.attempt_id, reason)


def cleanup(data: Mapping[str, Any] | None, suite_path: str | Path, dag_id: str, run_id: str,
            failed_steps: Sequence[str] = ()) -> None:
    """Always runs: keep the evidence of a failed attempt, remove the SUT, stop local load servers,
    close a still-open attempt, free the cluster.

    The destructive parts (teardown, stopping the load servers) run only after renewing (or taking
    back) the cluster lease: a run that went quiet past its lease and lost the cluster to another run
    only closes its attempt and says so. Every part is tried even if an earlier one fails; the first
    error is raised at the end."""
    from kubexp.load import servers

    suite = load_suite(suite_path)
    key, holder = platforms.lease_key(suite), lock_holder(dag_id, run_id)
    errors: list[BaseException] = []

    def attempt(part: str, action: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every cleanup part must get its chance
            log.exception("cleanup: %s failed: %s", part, exc)
            errors.append(exc)
        log.info("cleanup: %s took %.1f s", part, time.monotonic() - started)

    with _store() as conn:
        holds = selection.try_lock_cluster(conn, key, holder, lease_s(suite))
        other = None if holds else selection.cluster_lock_holder(conn, key)
    lost = (f"{holder} does not hold the lease on {key} any more ({other[0] if other else 'another run'} took it "
            f"after it expired); teardown and stopping the load servers are skipped so as not to destroy its run")
    if not holds:
        log.warning("cleanup: %s", lost)

    def start_etcd(current: Current) -> None:
        started = current.platform.start_stopped_etcd()
        if started:
            log.warning("cleanup: etcd members %s were stopped (etcd step killed?): started again", ", ".join(started))

    def platform_parts(current: Current) -> None:
        # etcd first: an etcd step killed outright leaves it stopped, and the teardown needs the API server.
        attempt("starting etcd members found stopped", lambda: start_etcd(current))
        attempt("removing the SUT", lambda: current.platform.remove_sut())

    current = Current.from_xcom(data) if data else None
    if current is not None and not current.dry_run:
        attempt("stopping leftover load processes", lambda: servers.stop_leftover(Path(current.results_dir)))
        if current.attempt_id is not None:
            attempt("keeping the raw files of the attempt", lambda: keep_evidence(current))
        if holds:  # Independent, and each takes seconds (graceful stops): side by side.
            with ThreadPoolExecutor(max_workers=2) as pool:
                pool.submit(platform_parts, current)
                pool.submit(attempt, "stopping the load servers", lambda: servers.stop(current.suite))
        shutil.rmtree(current.results_dir, ignore_errors=True)  # archived by load, or just now by keep_evidence
    with _store() as conn:
        if current is not None and current.attempt_id is not None and _outcome(conn, current.attempt_id) == "running":
            # Normally closed by finalize or the failure callback; this catches a killed task.
            where = f"{', '.join(failed_steps)} failed" if failed_steps else "the run ended before finalize"
            attempts.close_attempt(conn, current.attempt_id, "failed",
                                   f"{where} without closing the attempt (task process killed?)"
                                   + ("" if holds else f"; {lost}"))
        if holds:
            selection.release_cluster(conn, key, holder)
    if errors:
        raise errors[0]


def release_unused_lease(suite_path: str | Path, dag_id: str, run_id: str) -> bool:
    """Release the run's cluster lease when cleanup never ran: the lease sensor (cleanup's setup) was killed
    after taking it, so no step ran and nothing is deployed; without this the lease blocks every other run
    until it expires. True if it was released."""
    suite = load_suite(suite_path)
    key, holder = platforms.lease_key(suite), lock_holder(dag_id, run_id)
    with _store() as conn:
        held = selection.cluster_lock_holder(conn, key)
        if held is None or held[0] != holder:
            return False
        selection.release_cluster(conn, key, holder)
    log.warning("released the lease on %s that %s took before it was stopped (cleanup did not run)", key, holder)
    return True


def _outcome(conn: psycopg.Connection, attempt_id: int) -> str | None:
    row = conn.execute("SELECT outcome FROM attempt WHERE id = %s", (attempt_id,)).fetchone()
    return None if row is None else str(row[0])


def keep_evidence(current: Current) -> list[dict[str, Any]]:
    """Archive what a failed attempt left (partial JTL, JMeter output, the SUT's logs) before it is removed.

    The attempt is closed already, so the files are listed in its provenance ("evidence"), not as
    the experiment's artifacts; nothing is archived for a succeeded attempt (collect kept its files)."""
    from kubexp.artifacts import archive

    with _store() as conn:
        if _outcome(conn, _attempt(current)) == "succeeded":
            return []
    results = Path(current.results_dir)
    files = sorted(path for path in results.rglob("*") if path.is_file()) if results.is_dir() else []
    files += [path for path in current.platform.log_files().values() if path.is_file()]
    dest = artifacts_dir(current) / "evidence"
    kept = [dataclasses.asdict(archive(path, dest)) for path in files]
    if kept:
        with _store() as conn:
            attempts.record_provenance(conn, _attempt(current), {"evidence": kept})
    return kept
