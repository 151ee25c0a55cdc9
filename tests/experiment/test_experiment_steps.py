"""The bookkeeping steps of kubexp.experiment against a real PostgreSQL: lock, select, fail, cleanup."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from kubexp import experiment
from kubexp.load.jtl import JMETER_DEFAULT_COLUMNS, JtlError
from kubexp.settings import SUITES_DIR
from kubexp.store import attempts, db, selection
from kubexp.suite import load_suite


@pytest.fixture
def suite_path(tmp_path: Path, database_url: str, kubexp_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBEXP_DATABASE_URL", database_url)
    document = yaml.safe_load((SUITES_DIR / "demo.yaml").read_text())
    document.update(suite="steps", cluster="steps-cluster", repetitions=2)
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


def select_then_release(suite_path: Path, database_url: str, number: int) -> experiment.Current | None:
    """Select as run `number`, then give the cluster back (as if it had ended) so the next run may select."""
    current = experiment.select(suite_path, run(number), {})
    with db.connect(database_url) as conn:
        selection.release_cluster(conn, "steps-cluster", run(number).holder)
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
        assert selection.cluster_lock_holder(conn, "steps-cluster") is None
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


def test_overrides_change_settings_never_scenarios(suite_path: Path) -> None:
    suite = load_suite(suite_path)
    changed = experiment.apply_overrides(suite, {"allow_dirty": True, "load": {"servers": 2}})
    assert changed.allow_dirty and changed.load["servers"] == 2 and changed.scenarios() == suite.scenarios()
    with pytest.raises(experiment.ExperimentError, match="not allowed"):
        experiment.apply_overrides(suite, {"matrix": {"workers": [1]}})
    with pytest.raises(experiment.ExperimentError, match=r"with the run's overrides: load: .*'sever' was unexpected"):
        experiment.apply_overrides(suite, {"load": {"sever": 2}})



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
    load_run = {"jtl": str(_jtl(tmp_path / "run.jtl", t0_ms, good=20, bad=2)), "t0_ms": t0_ms,
                "t0": t0.isoformat(), "ended_at": (t0 + timedelta(seconds=2)).isoformat(), "artifacts": []}
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
