"""The bookkeeping steps of kubexp.experiment against a real PostgreSQL: lock, select, fail, cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubexp import experiment
from kubexp import platform as platforms
from kubexp.load.jtl import JMETER_DEFAULT_COLUMNS, JtlError
from kubexp.settings import SUITES_DIR
from kubexp.store import attempts, db, selection
from kubexp.suite import load_suite


@pytest.fixture
def suite_path(tmp_path: Path, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    document = yaml.safe_load((SUITES_DIR / "demo.yaml").read_text())
    document.update(suite="steps", cluster="steps-cluster", repetitions=2)
    document.setdefault("load", {})["results_dir"] = str(tmp_path / "results")  # not in the machine's /dev/shm
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run(number: int) -> experiment.RunRef:
    return experiment.RunRef("steps", f"manual__{number}", 1)


def test_lock_is_per_cluster_and_released_by_cleanup(suite_path: Path, database_url: str) -> None:
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")  # renewal by the same run
    assert not experiment.lock_cluster(suite_path, "other-suite", "manual__2")  # busy: the sensor waits
    experiment.cleanup(None, suite_path, "steps", "manual__1")
    assert experiment.lock_cluster(suite_path, "other-suite", "manual__2")


def _variant(suite_path: Path, name: str, **changes: object) -> Path:
    document = yaml.safe_load(suite_path.read_text())
    document.update(suite=name, **changes)
    path = suite_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_lease_is_keyed_on_the_real_target_not_the_cluster_name(
        suite_path: Path, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two local suites naming different clusters share one run folder, hence one local platform:
    the second waits (it used to run at once and tear down the first one's replicas)."""
    a = _variant(suite_path, "suite-a", cluster="cluster-a")
    b = _variant(suite_path, "suite-b", cluster="cluster-b")
    assert experiment.lock_cluster(a, "suite-a", "manual__1")
    assert not experiment.lock_cluster(b, "suite-b", "manual__1")
    with pytest.raises(selection.ClusterBusy, match=f"local:{kubexp_home}"):
        experiment.select(b, experiment.RunRef("suite-b", "manual__1", 1), {})
    monkeypatch.setenv("KUBEXP_HOME", str(tmp_path / "other-home"))  # another run folder: another platform
    assert experiment.lock_cluster(b, "suite-b", "manual__1")
    k8s = {"platform": "kubernetes", "matrix": {"workers": [1]}}
    one = _variant(suite_path, "k-one", cluster="k-a", kubernetes={"conn_id": "kx_a", "namespace": "ns-1"}, **k8s)
    two = _variant(suite_path, "k-two", cluster="k-b", kubernetes={"conn_id": "kx_a", "namespace": "ns-2"}, **k8s)
    three = _variant(suite_path, "k-three", cluster="k-a", kubernetes={"conn_id": "kx_b"}, **k8s)
    assert experiment.lock_cluster(one, "k-one", "manual__1")
    # teardown removes every kubexp namespace and Istio of the connection's cluster: one lease per connection
    assert not experiment.lock_cluster(two, "k-two", "manual__1")
    assert experiment.lock_cluster(three, "k-three", "manual__1")


async def test_a_deferred_wait_takes_the_lease_once_it_is_free(suite_path: Path, database_url: str) -> None:
    from airflow.sdk.module_loading import import_string

    from kubexp.orchestration.lease_wait import ClusterLeaseTrigger

    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    classpath, kwargs = ClusterLeaseTrigger(str(suite_path), "other", "manual__2", poke_interval=0.05).serialize()
    events = import_string(classpath)(**kwargs).run()  # as the triggerer revives it
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.5)
    assert not waiting.done()  # the target is busy: it waits (in the triggerer, not in a worker slot)
    experiment.cleanup(None, suite_path, "steps", "manual__1")
    event = await asyncio.wait_for(waiting, 10)
    assert event.payload == {"holder": "other/manual__2"}
    with db.connect(database_url) as conn:
        assert selection.cluster_lock_holder(conn, platforms.lease_key(load_suite(suite_path))) == (
            "other/manual__2", True)


def select_then_release(suite_path: Path, database_url: str, number: int) -> experiment.Current | None:
    """Select as run `number`, then give the cluster back (as if it had ended) so the next run may select."""
    current = experiment.select(suite_path, run(number), {})
    with db.connect(database_url) as conn:
        selection.release_cluster(conn, platforms.lease_key(load_suite(suite_path)), run(number).holder)
    return current


def test_select_takes_the_cluster_lease(suite_path: Path, database_url: str) -> None:
    assert experiment.select(suite_path, run(1), {}) is not None
    with pytest.raises(selection.ClusterBusy, match=f"held by {run(1).holder}"):
        experiment.select(suite_path, run(2), {})


def test_select_balances_and_completes(suite_path: Path, database_url: str) -> None:
    chosen = [select_then_release(suite_path, database_url, n) for n in range(4)]
    assert all(current is not None for current in chosen)
    # both scenarios have 0 finished: each selection claims one experiment, both get their two
    assert sorted(Counter(current.scenario_id for current in chosen if current).values()) == [2, 2]
    assert len({current.experiment_id for current in chosen if current}) == 4  # each claimed once
    assert select_then_release(suite_path, database_url, 5) is None  # all claimed: nothing left to run
    with db.connect(database_url) as conn:
        [(running,)] = conn.execute("SELECT count(*) FROM attempt WHERE outcome = 'running'").fetchall()
    assert running == 4


def test_dry_run_claims_nothing(suite_path: Path, database_url: str) -> None:
    dry = experiment.select(suite_path, run(1), {"dry_run": True})
    assert dry is not None and dry.attempt_id is None and dry.dry_run
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM experiment WHERE claimed_by IS NOT NULL").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM selection").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM attempt").fetchone() == (0,)


def test_forced_scenario_and_experiment(suite_path: Path, database_url: str) -> None:
    first = experiment.select(suite_path, run(1), {})
    assert first is not None
    other = next(s.id for s in load_suite(suite_path).scenarios() if s.id != first.scenario_id)
    forced = experiment.select(suite_path, run(2), {"scenario": other})
    assert forced is not None and forced.scenario_id == other
    with pytest.raises(experiment.ExperimentError, match=f"claimed by run {run(1).holder}"):
        experiment.select(suite_path, run(3), {"experiment": first.experiment_id})
    with pytest.raises(experiment.ExperimentError, match="is not in suite steps"):
        experiment.select(suite_path, run(3), {"scenario": "0123456789abcdef"})


def test_failure_then_cleanup_leaves_the_experiment_for_a_later_run(suite_path: Path, database_url: str) -> None:
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {"experiment": None})
    assert current is not None
    experiment.fail(current.to_xcom(), "load: JMeter exited with code 1")
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__1")  # closing again changes nothing
    with db.connect(database_url) as conn:
        outcome, error = conn.execute("SELECT outcome, error FROM attempt WHERE id = %s",
                                      (current.attempt_id,)).fetchone() or (None, None)
        assert (outcome, error) == ("failed", "load: JMeter exited with code 1")
        assert conn.execute("SELECT status, claimed_by FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("unfinished", None)
        assert selection.cluster_lock_holder(conn, platforms.lease_key(load_suite(suite_path))) is None
    again = experiment.select(suite_path, run(2), {"experiment": current.experiment_id})
    assert again is not None and again.experiment_id == current.experiment_id


def test_cleanup_closes_an_attempt_whose_task_was_killed(suite_path: Path, database_url: str) -> None:
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__1")
    with db.connect(database_url) as conn:
        outcome, error = conn.execute("SELECT outcome, error FROM attempt WHERE id = %s",
                                      (current.attempt_id,)).fetchone() or (None, None)
    assert outcome == "failed" and "before finalize" in error


def test_cleanup_of_a_run_that_lost_its_lease_touches_nothing_of_the_new_holder(
        suite_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Run 1 went quiet past its lease and run 2 took the cluster: run 1's cleanup must not tear down
    run 2's SUT nor stop its load servers; it only closes its own attempt and says why."""
    from kubexp.load import servers
    from kubexp.platform.local import LocalPlatform

    destroyed: list[str] = []
    monkeypatch.setattr(LocalPlatform, "teardown", lambda self: destroyed.append("teardown"))
    monkeypatch.setattr(servers, "stop", lambda suite: destroyed.append("load servers"))
    key = platforms.lease_key(load_suite(suite_path))
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    with db.connect(database_url) as conn:
        conn.execute("UPDATE cluster_lock SET expires_at = now() - interval '1 second'")
    assert experiment.lock_cluster(suite_path, "steps", "manual__2")  # the expired lease is taken over
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__1")
    assert destroyed == []
    assert "does not hold the lease" in caplog.text and "skipped" in caplog.text
    with db.connect(database_url) as conn:
        assert selection.cluster_lock_holder(conn, key) == (run(2).holder, True)
        outcome, error = conn.execute("SELECT outcome, error FROM attempt WHERE id = %s",
                                      (current.attempt_id,)).fetchone() or (None, None)
    assert outcome == "failed" and "lease" in error
    # With the lease free (expired, nobody took it), cleanup takes it first and does its work.
    experiment.cleanup(None, suite_path, "steps", "manual__2")
    current = experiment.select(suite_path, run(4), {})
    assert current is not None
    with db.connect(database_url) as conn:
        conn.execute("UPDATE cluster_lock SET expires_at = now() - interval '1 second'")
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__4")
    assert sorted(destroyed) == ["load servers", "teardown"]


def test_overrides_change_settings_never_scenarios(suite_path: Path) -> None:
    suite = load_suite(suite_path)
    changed = experiment.apply_overrides(suite, {"allow_dirty": True, "load": {"max_malformed_share": 0.2}})
    assert changed.allow_dirty and changed.load.max_malformed_share == 0.2
    assert changed.scenarios() == suite.scenarios()
    with pytest.raises(experiment.ExperimentError, match="not allowed"):
        experiment.apply_overrides(suite, {"matrix": {"workers": [1]}})
    # What runs, where the load goes and where data come from are the suite file's, never a trigger's.
    for unsafe in ({"load": {"plan": "/tmp/evil.jmx"}}, {"load": {"servers": ["10.0.0.9:1099"]}},
                   {"load": {"results_dir": "/tmp"}}, {"metrics": {"prometheus": [{"name": "x", "url": "http://evil"}]}},
                   {"metrics": {"queries": {"q": "up"}}}, {"load": {"sever": 2}}):
        with pytest.raises(experiment.ExperimentError, match=r"override .* is not allowed; allowed: allow_dirty, "
                                                             r"load\.max_malformed_share"):
            experiment.apply_overrides(suite, unsafe)



def _jtl(path: Path, t0_ms: int, good: int, bad: int) -> Path:
    """`good` samples 100 ms apart with `bad` lines of the wrong field count among them."""
    lines = [f"{t0_ms + i * 100},5,request,200,OK,workers 1-1,text,true,,100,50,1,1,http://x/,5,0,1"
             for i in range(good)]
    for index in range(bad):
        lines.insert(1 + index * 3, "broken,line")
    path.write_text("\n".join([",".join(JMETER_DEFAULT_COLUMNS), *lines]) + "\n")
    return path


def test_collect_applies_the_suites_malformed_limit_and_records_the_counts(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_jtl(tmp_path / "run.jtl", t0_ms, good=20, bad=2)), "t0_ms": t0_ms,
                "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=2)).isoformat()})
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    with pytest.raises(JtlError, match=r"2 of 22 lines are malformed .* more than the allowed 1.0%"):
        experiment.collect(current.to_xcom(), load_run)  # the default limit
    tolerant = dataclasses.replace(current, overrides={"load": {"max_malformed_share": 0.1}})
    collected = experiment.collect(tolerant.to_xcom(), load_run)
    assert (collected["rows"], collected["malformed"], collected["requests"]) == (20, 2, 20)
    with db.connect(database_url) as conn:
        facts = attempts.provenance(conn, current.attempt_id)
    assert facts["collect"]["jtl"] == {"rows": 20, "malformed": 2, "max_malformed_share": 0.1}


def _archived(load_run: dict[str, object]) -> dict[str, object]:
    """The load step's answer: its JTL archived (collect reads exactly the archived bytes)."""
    from kubexp.artifacts import archive

    jtl = Path(str(load_run["jtl"]))
    return {**load_run, "artifacts": [dataclasses.asdict(archive(jtl, jtl.parent / "archive"))]}


def test_collect_reads_the_archived_jtl_not_the_live_file(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A live JTL changed after the load (a leftover JMeter server writing, a hand edit) used to be what
    collect measured."""
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, [i * 100 for i in range(200)])),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=20)).isoformat()})
    _samples(tmp_path / "run.jtl", t0_ms, [i * 10 for i in range(2000)], code="503")  # after archiving
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None

    collected = experiment.collect(current.to_xcom(), load_run)

    assert (collected["rows"], collected["requests"], collected["no_response"]) == (200, 200, 0)
    assert "differs from its archive" in caplog.text
    (tmp_path / "run.jtl").unlink()  # gone (a RAM disk emptied by a reboot): the archive is all there is
    assert experiment.collect(current.to_xcom(), load_run)["requests"] == 200
    with db.connect(database_url) as conn:  # collected twice: one row of exact figures, from the archived samples
        assert conn.execute("SELECT count(*), min(requests), min(successes), min(success_elapsed_p99_ms) "
                            "FROM load_experiment").fetchone() == (1, 200, 200, 5.0)
    no_archive = {**load_run, "artifacts": []}
    with pytest.raises(experiment.ExperimentError, match=r"the load step archived no JTL"):
        experiment.collect(current.to_xcom(), no_archive)


def _samples(path: Path, t0_ms: int, offsets_ms: list[int], code: str = "200", elapsed_ms: int = 5) -> Path:
    ok = "true" if code == "200" else "false"
    lines = [f"{t0_ms + offset},{elapsed_ms},request,{code},OK,workers 1-1,text,{ok},,100,50,1,1,http://x/,5,0,1"
             for offset in offsets_ms]
    path.write_text("\n".join([",".join(JMETER_DEFAULT_COLUMNS), *lines]) + "\n")
    return path


@pytest.mark.parametrize(("offsets_ms", "code", "elapsed_ms", "problem"), [
    ([0, 19_000], "200", 5, "load rows cover 2 s of 20 s"),  # first-to-last span 20 s: it used to finish
    ([i * 100 for i in range(100)] + [19_000], "200", 5, "load rows cover 11 s of 20 s"),  # stalled at 10 s
    ([i * 100 for i in range(200)] + [25_000], "200", 5, ""),  # a late straggler adds no second
    ([i * 3_500 for i in range(6)], "200", 3_600, ""),  # slow responses: no start in some seconds, none idle
    ([i * 100 for i in range(200)], "Non HTTP response code: java.net.ConnectException", 5,
     "200 of 200 requests (100.0%) got no HTTP response"),  # a dead SUT: it used to finish
])
def test_finalize_counts_seconds_with_requests_and_refuses_a_dead_sut(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        offsets_ms: list[int], code: str, elapsed_ms: int, problem: str) -> None:
    from kubexp import postconditions
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, offsets_ms, code, elapsed_ms)),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=20)).isoformat()})
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None and current.params["duration_s"] == 20
    collected = experiment.collect(current.to_xcom(), load_run)
    load_problems = [text for text in postconditions.postconditions(current.suite, current.params, collected)
                     if "load rows" in text or "HTTP response" in text]
    assert load_problems == ([problem + (" (load.max_connection_failure_share in "
                                         f"{suite_path}: 10.0%)" if "HTTP" in problem else "")]
                             if problem else [])


def test_finalize_refuses_when_the_sanity_request_after_the_load_failed(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes asks the SUT again after the load (KubernetesPlatform.sanity_after_load): a SUT that did not
    come through it must not count, even with a complete load."""
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, [i * 100 for i in range(200)])),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=20)).isoformat(),
                "sanity_after": {"ok": False, "detail": "http://127.0.0.1:30080/healthz: HTTP 503"}})
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = dataclasses.replace(experiment.select(suite_path, run(1), {}),  # type: ignore[arg-type]
                                  overrides={"metrics": {"required": []}})
    collected = experiment.collect(current.to_xcom(), load_run)
    with pytest.raises(experiment.ExperimentError, match=r"the sanity request after the load got no HTTP 200 "
                                                         r"\(http://127.0.0.1:30080/healthz: HTTP 503\)"):
        experiment.finalize(current.to_xcom(), {**collected, "artifacts": 1})
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("unfinished",)
    problems = postconditions_of(current, {**collected, "sanity_after": {"ok": True, "detail": "HTTP 200"}})
    assert not [text for text in problems if "sanity" in text]


def postconditions_of(current: experiment.Current, collected: dict[str, object]) -> list[str]:
    from kubexp import postconditions

    return postconditions.postconditions(current.suite, current.params, collected)


def test_prometheus_completeness_gates_finishing_by_default(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo suite sets no metrics.required: the local platform's default series are required anyway."""
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, [i * 100 for i in range(200)])),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=20)).isoformat()})
    assert load_suite(suite_path).metrics.required is None
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    assert experiment.collect(current.to_xcom(), load_run)["metric_problems"] == [
        "required metric 'scrape_up' returned no series", "required metric 'haproxy_active_servers' returned no series"]
    relaxed = dataclasses.replace(current, overrides={"metrics": {"required": []}})
    assert experiment.collect(relaxed.to_xcom(), load_run)["metric_problems"] == []


def test_a_retried_finalize_after_its_commit_succeeds(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current, collected = _selected_and_collected(suite_path, tmp_path, monkeypatch)
    experiment.finalize(current.to_xcom(), collected)
    experiment.finalize(current.to_xcom(), collected)  # the retry of a try whose commit went through
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT status, finished_attempt_id FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("finished", current.attempt_id)


def _selected_and_collected(suite_path: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> tuple[experiment.Current, dict[str, Any]]:
    """One experiment of the steps suite selected and collected from 20 s of synthetic JTL rows."""
    from kubexp.collect import prometheus

    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=[]))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, [i * 100 for i in range(200)])),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=20)).isoformat()})
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {"overrides": {"metrics": {"required": []}}})
    assert current is not None
    return current, {**experiment.collect(current.to_xcom(), load_run), "artifacts": 1}


def _finalized_with_slo(suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> experiment.Current:
    """One experiment of the steps suite with an SLO, selected, collected and finalized."""
    document = yaml.safe_load(suite_path.read_text())
    document["slo"] = {"throughput": {"figure": "successes_per_s_median", "min": 1000}}  # missed: never mind
    suite_path.write_text(yaml.safe_dump(document))
    current, collected = _selected_and_collected(suite_path, tmp_path, monkeypatch)
    experiment.finalize(current.to_xcom(), collected)
    return current


def test_finalize_stores_the_experiments_slo_values_after_finishing_it(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    current = _finalized_with_slo(suite_path, tmp_path, monkeypatch)
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("finished",)
        [(name, value, met, attempt_id)] = conn.execute(
            "SELECT slo, value, met, attempt_id FROM slo_value WHERE experiment_id = %s",
            (current.experiment_id,)).fetchall()
    assert (name, met, attempt_id) == ("throughput", False, current.attempt_id) and 0 < value < 1000


def test_an_slo_that_cannot_be_evaluated_never_unfinishes_the_experiment(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import psycopg

    from kubexp.analysis import slo

    def broken(*args: object) -> int:
        raise psycopg.OperationalError("the results database went away")

    monkeypatch.setattr(slo, "evaluate", broken)
    current = _finalized_with_slo(suite_path, tmp_path, monkeypatch)
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT status FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("finished",)
        assert conn.execute("SELECT count(*) FROM slo_value").fetchone() == (0,)
    assert "SLO values not stored (the results database went away); `kubexp verdict steps` computes them" \
        in caplog.text


def test_a_select_killed_after_claiming_is_resumed_by_its_retry(suite_path: Path, database_url: str) -> None:
    """Try 1 claimed an experiment (and even opened its attempt), then died: try 2 takes the same experiment
    and closes try 1's attempt, instead of leaving the claim orphaned until it goes stale."""
    first = experiment.select(suite_path, run(1), {})
    assert first is not None
    retried = experiment.select(suite_path, experiment.RunRef("steps", "manual__1", 2), {})
    assert retried is not None and retried.experiment_id == first.experiment_id
    assert retried.attempt_id != first.attempt_id
    forced = experiment.select(suite_path, experiment.RunRef("steps", "manual__1", 3),
                               {"experiment": first.experiment_id})
    assert forced is not None and forced.experiment_id == first.experiment_id
    with db.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM experiment WHERE claimed_by IS NOT NULL").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM selection").fetchone() == (1,)
        outcomes = conn.execute("SELECT outcome FROM attempt ORDER BY id").fetchall()
    assert [outcome for (outcome,) in outcomes] == ["failed", "failed", "running"]


def test_an_etcd_dry_run_stops_the_experiment_without_a_retry(
        tmp_path: Path, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    path = tmp_path / "etcd-dry.yaml"
    path.write_text(yaml.safe_dump({
        "suite": "etcd-dry", "platform": "kubernetes", "cluster": "dry-cluster", "repetitions": 1,
        "matrix": {"etcd_storage": ["ramdisk"]},
        "kubernetes": {"etcd": {"dry_run": True, "members": [{"name": "master-1", "ssh_conn_id": "kx_nowhere"}]}}}))
    assert experiment.lock_cluster(path, "etcd-dry", "manual__1")
    current = experiment.select(path, experiment.RunRef("etcd-dry", "manual__1", 1), {})
    assert current is not None
    with pytest.raises(experiment.ExperimentError) as raised:
        experiment.configure_etcd(current.to_xcom())
    assert type(raised.value) is experiment.ExperimentError  # in the DAG's no-retry list (exact class)
    message = str(raised.value)
    assert "kubernetes.etcd.dry_run is on" in message and "nothing was changed" in message and str(path) in message
    assert "[dry-run] etcd member master-1:" in capsys.readouterr().out  # the commands were printed
    with db.connect(database_url) as conn:
        assert attempts.provenance(conn, current.attempt_id)["etcd"]["dry_run"] is True
        assert conn.execute("SELECT status FROM experiment WHERE id = %s",
                            (current.experiment_id,)).fetchone() == ("unfinished",)


def test_cleanup_starts_stopped_etcd_members_before_the_teardown(
        suite_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An etcd step killed outright leaves etcd stopped; the teardown needs the API server, hence etcd, first."""
    from kubexp.platform.local import LocalPlatform

    done: list[str] = []
    monkeypatch.setattr(LocalPlatform, "start_stopped_etcd", lambda self: done.append("etcd") or ["master-1"])
    monkeypatch.setattr(LocalPlatform, "teardown", lambda self: done.append("teardown"))
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__1")
    assert done == ["etcd", "teardown"]
    assert "etcd members master-1 were stopped" in caplog.text


def test_collect_and_the_store_judge_metric_completeness_by_one_rule(
        suite_path: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load ended 3 s before its 20 s: collect used to judge the required series over the load's 17 s
    (complete, no problem) while the store recorded 85 % for the same series; both use [0, duration_s) now."""
    from kubexp.collect import prometheus
    from kubexp.records import MetricSeries

    series = [MetricSeries("prometheus:local", "scrape_up", {"component": "app"}, [(t, 1.0) for t in range(17)]),
              MetricSeries("prometheus:local", "haproxy_active_servers", {}, [(t, 1.0) for t in range(-3, 21)])]
    monkeypatch.setattr(prometheus, "collect_for_suite", lambda *args: prometheus.Collection(series=series))
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    t0_ms = int(t0.timestamp() * 1000)
    load_run = _archived({"jtl": str(_samples(tmp_path / "run.jtl", t0_ms, [i * 100 for i in range(170)])),
                          "t0_ms": t0_ms, "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=17)).isoformat()})
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None and current.params["duration_s"] == 20

    problems = experiment.collect(current.to_xcom(), load_run)["metric_problems"]

    with db.connect(database_url) as conn:
        stored = dict(conn.execute("SELECT name, completeness FROM metric_series WHERE experiment_id = %s",
                                   (current.experiment_id,)).fetchall())
    assert stored == {"scrape_up": 0.85, "haproxy_active_servers": 1.0}
    assert problems == ['required series scrape_up{component="app"} from prometheus:local covers 85% of the seconds '
                        '(< 90%)']


def test_deploy_restarts_the_load_servers_while_the_app_starts(
        suite_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load servers' JVMs start within the app's readiness period, which the rollout waits out anyway: the
    deploy step restarts them after starting the app, records them and hands them to the load step. Remote
    servers that the platform cannot restart are a setting to fix (exact PreflightError: no retry)."""
    from kubexp.load import servers
    from kubexp.platform.local import LocalPlatform
    from kubexp.preflight import PreflightError

    done: list[str] = []
    restart = servers.restart
    monkeypatch.setattr(LocalPlatform, "deploy", lambda self, scenario_id, params: done.append("app"))
    monkeypatch.setattr(LocalPlatform, "fingerprint", lambda self: {"platform": "local"})
    monkeypatch.setattr(servers, "restart", lambda suite: done.append("load servers") or ["127.0.0.1:1099"])
    assert experiment.lock_cluster(suite_path, "steps", "manual__1")
    current = experiment.select(suite_path, run(1), {})
    assert current is not None
    assert experiment.deploy(current.to_xcom()) == {"load_servers": ["127.0.0.1:1099"]}
    assert done == ["app", "load servers"]
    with db.connect(database_url) as conn:
        assert attempts.provenance(conn, current.attempt_id)["load_servers"] == ["127.0.0.1:1099"]
    experiment.cleanup(current.to_xcom(), suite_path, "steps", "manual__1")

    monkeypatch.setattr(servers, "restart", restart)
    remote = _variant(suite_path, "remote-servers", load={"servers": ["10.0.0.7:1099"]})
    assert experiment.lock_cluster(remote, "remote-servers", "manual__2")
    current = experiment.select(remote, experiment.RunRef("remote-servers", "manual__2", 1), {})
    assert current is not None
    with pytest.raises(PreflightError) as raised:
        experiment.deploy(current.to_xcom())
    assert type(raised.value) is PreflightError and "cannot restart remote load servers" in str(raised.value)
