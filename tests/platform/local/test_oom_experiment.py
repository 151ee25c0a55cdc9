"""The paper's memory-limit behaviour, for real: a short experiment with JMeter (one local JMeter
server, as the DAG runs it) sending heavy concurrent crops. Under a 64 MiB limit replicas get
OOM-killed and restarted and the load sees 5xx; under 512 MiB nothing of the kind happens."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kubexp.load import jmeter, jtl
from kubexp.load.rmi import ssl_properties
from kubexp.platform.local import LocalPlatform
from kubexp.platform.local.appserver import DEFAULT_CROP_PATH
from kubexp.records import PlatformEvent

PARAMS = {"pods": 2, "pods_max": 2, "workers": 8, "think_time_ms": 20, "mesh": "native", "cpu_limit_millicores": 1000,
          "etcd_storage": "ramdisk", "etcd_fsync_delay_ms": 0, "connect_timeout_ms": 2000,
          "response_timeout_ms": 30000, "arrival_rate_per_s": None}  # generous: a busy CI machine is slow


@pytest.fixture
def jmeter_servers(kubexp_home: Path) -> Iterator[list[str]]:
    servers = jmeter.LocalJMeterServers(1, kubexp_home / "jmeter-servers")
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture
def results_dir() -> Iterator[Path]:
    """JMeter's results go to a RAM disk, as in an experiment."""
    path = Path(tempfile.mkdtemp(prefix="kubexp-test-load-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def short_experiment(platform: LocalPlatform, servers: list[str], results: Path, memory_limit_mib: int,
                     duration_s: int) -> tuple[pd.DataFrame, list[PlatformEvent]]:
    params: dict[str, Any] = {**PARAMS, "memory_limit_mib": memory_limit_mib, "duration_s": duration_s}
    platform.deploy(f"memory-{memory_limit_mib}", params)
    deadline = time.monotonic() + 60
    while not platform.rollout_ready(params):
        assert time.monotonic() < deadline, "rollout not ready in time"
        time.sleep(0.2)
    run = jmeter.run_load(params, platform.endpoint(), results / str(memory_limit_mib), servers=servers,
                          request_path=DEFAULT_CROP_PATH, rmi_ssl=ssl_properties())  # the run folder's, as the servers
    frame = jtl.aggregate(run.jtl, run.t0_ms).frame
    return frame, platform.events(run.t0, run.ended_at, run.t0)


@pytest.mark.slow
def test_64_mib_oom_kills_restarts_and_5xx_but_not_512(make_platform: Callable[..., LocalPlatform],
                                                       jmeter_servers: list[str], results_dir: Path) -> None:
    platform = make_platform()  # kubelet defaults: 10 s readiness period, 10 s first back-off

    frame, events = short_experiment(platform, jmeter_servers, results_dir, 64, duration_s=20)
    kinds = [e.kind for e in events]
    assert "OOMKilled" in kinds and "Restarted" in kinds, kinds
    oom = [e for e in events if e.kind == "OOMKilled"]
    assert "memory limit 64 MiB exceeded" in oom[0].message
    assert platform.fingerprint()["memory_limit_enforced"] is True
    failing = frame[frame["failures_5xx"] > 0]
    assert not failing.empty, "OOM-killed replicas must show as 5xx in the load data"
    assert failing["t"].min() >= oom[0].t - 1  # the errors follow the first kill

    frame, events = short_experiment(platform, jmeter_servers, results_dir, 512, duration_s=12)
    assert [e.kind for e in events if e.kind in ("OOMKilled", "Exited", "Restarted")] == []
    assert frame["failures"].sum() == 0
    assert frame["successes"].sum() > 0
