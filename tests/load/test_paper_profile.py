"""The `paper` load profile for real on the local platform: JMeter's paper plan against Flask's threaded
server behind HAProxy, read back from the app's own access log (one line per request, with the peer's
port: a port seen once is a TCP connection that carried one request)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubexp.load import jtl, profiles
from kubexp.load.jmeter import run_load
from kubexp.platform.local import LocalPlatform
from kubexp.suite import LoadSection

ACCESS_LINE = re.compile(r' (?P<addr>[0-9.]+):(?P<port>\d+) "GET (?P<path>\S+)" (?P<status>\d{3}) ')
PARAMS = {"pods": 2, "pods_max": 2, "workers": 4, "think_time_ms": 20, "duration_s": 6, "memory_limit_mib": 256,
          "cpu_limit_millicores": 1000, "connect_timeout_ms": 2000, "response_timeout_ms": 0}


@pytest.fixture
def deployed(request: pytest.FixtureRequest, kubexp_home: Path) -> Iterator[tuple[LocalPlatform, LoadSection]]:
    """The local platform for (load profile, app server); None = the profile's app server."""
    profile, server = request.param
    load = LoadSection(profile=profile)
    local = {"health_check_interval_s": 2, **({"app_server": server} if server else {})}
    platform = LocalPlatform(profiles.app_settings(local, load), kubexp_home / "local")
    try:
        platform.deploy(f"{profile}-profile", PARAMS)
        deadline = time.monotonic() + 60
        while not platform.rollout_ready(PARAMS):
            assert time.monotonic() < deadline, "rollout not ready in time"
            time.sleep(0.2)
        yield platform, load
    finally:
        platform.teardown()


def crop_requests(platform: LocalPlatform, path: str) -> list[tuple[str, str]]:
    """(peer address, peer port) of every answered request for `path`, from all replicas' access logs."""
    found = []
    for log in sorted((platform.state_dir / "logs").glob("replica-*.log")):
        for match in ACCESS_LINE.finditer(log.read_text(errors="replace")):
            if match["path"] == path:
                found.append((match["addr"], match["port"]))
    return found


def run_profile(platform: LocalPlatform, load: dict[str, str], results: Path) -> tuple[list[tuple[str, str]], int]:
    path = profiles.request_path_for(load)
    before = len(crop_requests(platform, path))  # the rollout's sanity request may have used the same path
    run = run_load(PARAMS, platform.endpoint(), results, plan=profiles.plan_for(load, PARAMS), request_path=path)
    samples = jtl.aggregate(run.jtl, run.t0_ms).frame
    return crop_requests(platform, path)[before:], int(samples["successes"].sum())


def assert_a_connection_per_request(seen: list[tuple[str, str]]) -> None:
    """Each request on its own TCP connection. The kernel hands a closed connection's source port to a later
    one, so a port may show up twice over a run; a kept-alive connection carries a worker's every request
    (the kubexp profile's test below sees a handful of ports for hundreds of requests)."""
    counts = Counter(seen)
    assert max(counts.values()) <= 2, f"TCP connections that carried more than two requests: {counts.most_common(5)}"
    assert len(counts) >= 0.9 * len(seen), f"{len(seen)} requests came over only {len(counts)} source ports"


def served_by(platform: LocalPlatform) -> set[str]:
    replicas = json.loads((platform.state_dir / "deployment.json").read_text())["replicas"]
    return {"flask" if "cropapp.serve --server flask" in " ".join(r["argv"]) else "gunicorn" for r in replicas}


@pytest.mark.parametrize("deployed", [("paper", None)], indirect=True)
def test_paper_profile_runs_flask_with_one_tcp_connection_per_request(
        deployed: tuple[LocalPlatform, dict[str, str]], jmeter_home_dir: Path, ram_results: Path) -> None:
    platform, load = deployed
    assert served_by(platform) == {"flask"}
    seen, successes = run_profile(platform, load, ram_results)
    # every successful sample is one line; requests cut off at the load's end are logged by the app only
    assert successes > 50 and successes <= len(seen) <= successes + PARAMS["workers"]
    assert_a_connection_per_request(seen)


@pytest.mark.parametrize("deployed", [("paper", "gunicorn")], indirect=True)
def test_paper_plan_itself_opens_a_connection_per_request(
        deployed: tuple[LocalPlatform, dict[str, str]], jmeter_home_dir: Path, ram_results: Path) -> None:
    """Flask's server closes every connection itself; gunicorn keeps them open when the client asks, so only
    here does the access log show what the paper plan (keep-alive off) does."""
    platform, load = deployed
    assert served_by(platform) == {"gunicorn"}
    seen, successes = run_profile(platform, load, ram_results)
    assert successes > 50 and successes <= len(seen) <= successes + PARAMS["workers"]
    assert_a_connection_per_request(seen)


@pytest.mark.parametrize("deployed", [("kubexp", None)], indirect=True)
def test_kubexp_profile_keeps_connections_alive(
        deployed: tuple[LocalPlatform, dict[str, str]], jmeter_home_dir: Path, ram_results: Path) -> None:
    """The counterpart: with keep-alive (kubexp's plan, gunicorn) connections carry many requests, which the
    tests above would see."""
    platform, load = deployed
    assert served_by(platform) == {"gunicorn"}
    seen, successes = run_profile(platform, load, ram_results)
    assert successes >= 10 and successes <= len(seen) <= successes + PARAMS["workers"]
    assert len(set(seen)) < len(seen), f"keep-alive: connections carry several requests: {Counter(seen)}"
