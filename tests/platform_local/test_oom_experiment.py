"""The paper's memory-limit behaviour, for real: heavy concurrent crops under a 64 MiB limit get
replicas OOM-killed and restarted, and the load sees 5xx; under 512 MiB nothing of the kind happens."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from kubexp.platform.local import LocalPlatform

PARAMS = {"pods": 2, "cpu_limit_millicores": 1000, "mesh": "native"}


def short_experiment(platform: LocalPlatform, crop_load: Callable, memory_limit_mib: int, seconds: float):
    params = {**PARAMS, "memory_limit_mib": memory_limit_mib}
    platform.deploy(f"memory-{memory_limit_mib}", params)
    deadline = time.monotonic() + 60
    while not platform.rollout_ready(params):
        assert time.monotonic() < deadline, "rollout not ready in time"
        time.sleep(0.2)
    load = crop_load(platform.endpoint().url.rstrip("/"), threads=8, seconds=seconds).start()
    frame = load.wait()
    return frame, platform.events(load.t0, datetime.now(UTC), load.t0)


@pytest.mark.slow
def test_64_mib_oom_kills_restarts_and_5xx_but_not_512(make_platform: Callable[..., LocalPlatform],
                                                       crop_load: Callable) -> None:
    platform = make_platform()  # kubelet defaults: 10 s readiness period, 10 s first back-off

    frame, events = short_experiment(platform, crop_load, 64, seconds=20)
    kinds = [e.kind for e in events]
    assert "OOMKilled" in kinds and "Restarted" in kinds, kinds
    oom = [e for e in events if e.kind == "OOMKilled"]
    assert "memory limit 64 MiB exceeded" in oom[0].message
    assert platform.fingerprint()["memory_limit_enforced"] is True
    failing = frame[frame["failures_5xx"] > 0]
    assert not failing.empty, "OOM-killed replicas must show as 5xx in the load data"
    assert failing["t"].min() >= oom[0].t - 1  # the errors follow the first kill

    frame, events = short_experiment(platform, crop_load, 512, seconds=12)
    assert [e.kind for e in events if e.kind in ("OOMKilled", "Exited", "Restarted")] == []
    assert frame["failures_5xx"].sum() == 0 and frame["failures_other"].sum() == 0
    assert frame["successes"].sum() > 0
