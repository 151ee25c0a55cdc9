"""The whole local SUT for real: deploy, readiness, a replica killed with -9 under load (native: 5xx
until the next failed health check; istio stand-in: retried away), and a teardown that leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import requests

from kubexp.local_services import prometheus_process
from kubexp.platform.base import Unsupported
from kubexp.platform.local import LocalPlatform, targets, testbed
from kubexp.processes import free_port, port_is_free

INTERVAL_S = 6
BACKOFF_S = 8  # longer than the checks' period: HAProxy sees the replica down before it is restarted
PARAMS = {"pods": 2, "memory_limit_mib": 256, "cpu_limit_millicores": 1000, "etcd_storage": "ramdisk"}


def wait_ready(platform: LocalPlatform, params: dict[str, object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not platform.rollout_ready(params):
        assert time.monotonic() < deadline, "rollout not ready in time"
        time.sleep(0.2)


def kill_replica_under_load(platform: LocalPlatform, crop_load: Callable, replica: str, interval_s: float):
    """Kill the replica halfway between two of HAProxy's health checks, under a closed-loop load.

    HAProxy checks every `interval_s` from its first passed check, which the supervisor journals
    (Ready, polled each second, so up to ~1.5 s late). Killing half a period after it leaves a
    stale window of at least interval/2 - 1.5 s: long enough for requests to reach the dead replica.
    """
    since, deadline = datetime.now(UTC) - timedelta(minutes=5), time.monotonic() + 5
    ready: list[datetime] = []
    while not ready and time.monotonic() < deadline:  # the supervisor polls HAProxy once a second
        events = platform.events(since, datetime.now(UTC), since)
        ready = [e.at for e in events if (e.kind, e.obj) == ("Ready", replica)]
        time.sleep(0.2)
    kill_at = ready[-1] + timedelta(seconds=interval_s / 2 - 0.75)
    while kill_at < datetime.now(UTC) + timedelta(seconds=1.5):
        kill_at += timedelta(seconds=interval_s)
    load_s = (kill_at - datetime.now(UTC)).total_seconds() + BACKOFF_S + 2
    load = crop_load(platform.endpoint().url.rstrip("/"), threads=4, seconds=load_s).start()
    time.sleep((kill_at - datetime.now(UTC)).total_seconds())
    pid = int((platform.state_dir / "pids" / f"{replica}.pid").read_text().split()[0])  # line 2: start time
    os.kill(pid, signal.SIGKILL)
    frame = load.wait()
    return frame, platform.events(load.t0, datetime.now(UTC), load.t0)


def sut_traces(platform: LocalPlatform) -> dict[str, object]:
    """Everything of the SUT that exists now: processes, cgroups, data dirs, ports, files."""
    state = platform.state_dir
    pids = {int(p.read_text().split()[0]) for p in (state / "pids").glob("*.pid")}
    cgroup_tops = [Path(p) for p in json.loads((state / "cgroups.json").read_text())]
    pids |= {int(p) for top in cgroup_tops for p in top.rglob("cgroup.procs") for p in p.read_text().split()}
    facts = json.loads((state / "facts.json").read_text())
    etcd = json.loads((state / "etcd.json").read_text())
    ports = [facts["frontend_port"], facts["stats_port"], int(etcd["client_url"].rsplit(":", 1)[1])]
    return {"pids": pids, "cgroups": cgroup_tops, "etcd_data": Path(etcd["data_dir"]), "ports": ports}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_replica_killed_under_load_then_nothing_left(make_platform: Callable[..., LocalPlatform],
                                                      crop_load: Callable) -> None:
    # A per-try timeout of 10 s instead of 2 s: on a busy CI machine a crop can take 2 s, and this test is
    # about retrying away a dead replica, not about timeouts.
    platform = make_platform({"health_check_interval_s": INTERVAL_S, "restart_backoff_s": BACKOFF_S,
                              "retry_per_try_timeout_s": 10})
    platform.configure_etcd(PARAMS)
    platform.deploy("native-kill", {**PARAMS, "mesh": "native"})
    wait_ready(platform, PARAMS)
    # HAProxy (whose first check comes at its start) starts one PLEG relist after the replicas, as the kubelet
    # first probes a container once a relist sees it running.
    started = {name: float((platform.state_dir / "pids" / f"{name}.pid").read_text().split()[1])
               for name in ("haproxy", "replica-0", "replica-1")}
    assert started["haproxy"] - max(started["replica-0"], started["replica-1"]) >= testbed.FIRST_CHECK_AFTER_S - 0.02

    fingerprint = platform.fingerprint()
    assert fingerprint["memory_limit_enforced"] is True and fingerprint["cgroup_version"] in ("v1", "v2")
    assert fingerprint["autoscaling_modelled"] is False and fingerprint["etcd_in_routing"] is False
    assert fingerprint["haproxy_version"].startswith("2.") and fingerprint["etcd_version"] == "3.5.1"
    groups = targets.read(platform.targets_file)
    assert sorted(g["labels"]["component"] for g in groups) == ["app", "app", "etcd", "haproxy"]
    assert sorted(platform.scrape_targets()) == sorted(g["targets"][0] for g in groups)  # the rollout waits for these
    [haproxy_target] = [g["targets"][0] for g in groups if g["labels"]["component"] == "haproxy"]
    assert "haproxy_backend_active_servers" in requests.get(f"http://{haproxy_target}/metrics", timeout=5).text

    frame, events = kill_replica_under_load(platform, crop_load, "replica-0", INTERVAL_S)
    kinds = [(e.kind, e.obj) for e in events]
    exited = [e for e in events if e.kind == "Exited"]
    assert [e.obj for e in exited] == ["replica-0"] and "signal 9 (SIGKILL)" in exited[0].message
    assert 1 <= exited[0].t <= INTERVAL_S + 3
    assert ("Unhealthy", "replica-0") in kinds and ("Restarted", "replica-0") in kinds
    assert frame["failures_5xx"].sum() > 0, "a dead replica must get traffic until its next failed check"
    [unhealthy] = [e for e in events if (e.kind, e.obj) == ("Unhealthy", "replica-0")]
    failing = frame.loc[frame["failures_5xx"] > 0, "t"]
    assert failing.min() >= exited[0].t - 1 and failing.max() <= unhealthy.t + 2  # journalled up to ~1.5 s late
    assert frame["successes"].sum() > 0

    platform.deploy("istio-kill", {**PARAMS, "mesh": "istio"})
    wait_ready(platform, PARAMS)
    frame, events = kill_replica_under_load(platform, crop_load, "replica-1", INTERVAL_S)
    assert [e.obj for e in events if e.kind == "Exited"] == ["replica-1"]
    assert frame["failures_5xx"].sum() + frame["failures_other"].sum() == 0, "retries must hide the dead replica"

    traces = sut_traces(platform)
    assert traces["pids"] and all(alive(pid) for pid in traces["pids"])
    platform.teardown()
    assert not any(alive(pid) for pid in traces["pids"])
    assert not any(top.exists() for top in traces["cgroups"])
    assert not traces["etcd_data"].exists()
    assert all(port_is_free(port) for port in traces["ports"])
    assert not platform.targets_file.exists() and not platform.state_dir.exists()
    platform.teardown()  # idempotent


@pytest.mark.slow
def test_without_writable_cgroup_the_scenario_is_refused_unless_allowed(
        make_platform: Callable[..., LocalPlatform], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testbed, "_said_once", set())
    params = {"pods": 1, "memory_limit_mib": 64, "cpu_limit_millicores": 500}
    refused = make_platform({"cgroup_parent": "/kubexp-no-such-cgroup"}, name="refused")
    with pytest.raises(Unsupported, match=r"scenario unlimited: memory_limit_mib=64, cpu_limit_millicores=500 "
                                          r"cannot be enforced on this machine: cgroup v1: \S*/kubexp-no-such-cgroup "
                                          r"is not a writable memory cgroup"):
        refused.deploy("unlimited", params)
    platform = make_platform({"cgroup_parent": "/kubexp-no-such-cgroup", "health_check_interval_s": 1,
                              "allow_unenforced_limits": True})
    with caplog.at_level("WARNING"):
        platform.deploy("unlimited", params)
        platform.deploy("unlimited", params)  # said once per process, not per deploy
    assert sum("replicas run without memory_limit_mib=64, cpu_limit_millicores=500" in r.getMessage()
               for r in caplog.records) == 1
    wait_ready(platform, params)
    fingerprint = platform.fingerprint()
    assert fingerprint["memory_limit_enforced"] is False and fingerprint["cpu_limit_enforced"] is False
    assert fingerprint["cgroup_version"] == "none"


@pytest.mark.slow
def test_local_prometheus_scrapes_replicas_haproxy_and_etcd(make_platform: Callable[..., LocalPlatform],
                                                           kubexp_home: Path) -> None:
    port = free_port()
    prometheus = prometheus_process(kubexp_home, port)  # the services' Prometheus, reading our targets folder
    prometheus.start(timeout=30)
    try:
        platform = make_platform({"health_check_interval_s": 1})
        params = {"pods": 1, "memory_limit_mib": 256, "cpu_limit_millicores": 500}
        platform.configure_etcd(params)
        platform.deploy("scraped", params)
        wait_ready(platform, params)
        expected = {"app", "haproxy", "etcd"}
        query = f"http://127.0.0.1:{port}/api/v1/query"
        deadline, up = time.monotonic() + 30, set()
        while up != expected and time.monotonic() < deadline:
            result = requests.get(query, params={"query": f'up{{platform="{platform.group_name}"}} == 1'},
                                  timeout=5).json()["data"]["result"]
            up = {r["metric"]["component"] for r in result}
            time.sleep(0.5)
        assert up == expected
        samples = requests.get(query, params={"query": "haproxy_backend_active_servers"}, timeout=5).json()
        assert samples["data"]["result"], "HAProxy's exporter is scraped"

        platform.teardown()
        targets_api = f"http://127.0.0.1:{port}/api/v1/targets"
        deadline, active = time.monotonic() + 30, [None]
        while active and time.monotonic() < deadline:
            active = requests.get(targets_api, timeout=5).json()["data"]["activeTargets"]
            time.sleep(0.5)
        assert active == [], "the targets file is gone, so are the targets"
    finally:
        prometheus.stop()
