"""The section 4 model against hand-computed values and the paper's example."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from click.testing import CliRunner

from kubexp.cli import main
from kubexp.queueing import (
    ModelError,
    dimension,
    load_region_warnings,
    mva,
    offered_rate,
    saturating_workers,
    service_rate,
    utilisation,
    worker_rate,
)
from kubexp.suite import LoadSection


def test_eq5_reproduces_the_paper() -> None:
    # 120 workers, 20 ms think time, negligible response time: 120 / 0.020 s = 6,000 req/s.
    assert offered_rate(120, 20, 0) == pytest.approx(6000.0)
    # 63 ms response time + 20 ms think time: 1 / 0.083 s = 12.05 req/s per worker ("about 12").
    assert worker_rate(20, 63) == pytest.approx(1000 / 83)
    assert round(worker_rate(20, 63)) == 12


def test_eq5_takes_the_timeout_when_responses_are_slower() -> None:
    # min(5000 ms, 2000 ms) + 20 ms = 2.02 s per cycle; 10 workers offer 10 / 2.02 s.
    assert offered_rate(10, 20, 5000, timeout_ms=2000) == pytest.approx(10 / 2.02)
    assert offered_rate(10, 20, 100, timeout_ms=2000) == pytest.approx(10 / 0.12)


def test_a_timeout_of_zero_is_none() -> None:
    # The paper's t_time-out = infinity: a 5 s response is waited for, 20 ms think time on top.
    assert worker_rate(20, 5000, 0) == worker_rate(20, 5000) == pytest.approx(1000 / 5020)
    assert offered_rate(10, 20, 5000, timeout_ms=0) == pytest.approx(10 / 5.02)
    assert dimension(10, 20, 5000, timeout_ms=0).timeout_ms is None
    assert dimension(10, 20, 5000, timeout_ms=2000).timeout_ms == 2000
    with pytest.raises(ModelError, match="timeout_ms=-1 must be >= 0"):
        worker_rate(20, 63, -1)


def test_capacity_and_utilisation() -> None:
    capacity = service_rate(20, 63)  # 20 pods x 1/0.063 s = 317.46 responses/s
    assert capacity == pytest.approx(20 / 0.063)
    assert utilisation(offered_rate(20, 20, 63), capacity) == pytest.approx((20 / 0.083) / (20 / 0.063))
    # rho >= 1 needs L >= mu * 0.083 s = 26.35, so 27 workers.
    assert saturating_workers(capacity, 20, 63) == 27


def test_mva_small_case_by_hand() -> None:
    # Two workers, Z = 1 s, one pod with S = 1 s.
    # n=1: R = S = 1, X = 1 / (1 + 1) = 0.5, p(1|1) = X*S = 0.5, p(0|1) = 0.5.
    # n=2: R = 1 * p(0|1) + 2 * p(1|1) = 0.5 + 1.0 = 1.5, X = 2 / (1 + 1.5) = 0.8.
    one, two = mva(2, 1000, 1000, pods=1)
    assert (one.throughput, one.response_time_ms) == pytest.approx((0.5, 1000.0))
    assert (two.throughput, two.response_time_ms) == pytest.approx((0.8, 1500.0))
    assert two.queue_length == pytest.approx(0.8 * 1.5)
    assert two.utilisation == pytest.approx(0.8)
    # Same with two pods: nobody ever waits, R = S = 1, X = 2 / (1 + 1) = 1, each pod busy half the time.
    two_pods = mva(2, 1000, 1000, pods=2)[-1]
    assert (two_pods.throughput, two_pods.response_time_ms, two_pods.utilisation) == pytest.approx((1.0, 1000.0, 0.5))


def _birth_death(workers: int, think_s: float, service_s: float, pods: int) -> tuple[float, float]:
    """Throughput and response time of the same network as a finite-source birth-death chain."""
    log_weights = [0.0]
    for k in range(1, workers + 1):
        log_weights.append(log_weights[-1] + math.log((workers - k + 1) / think_s) - math.log(min(k, pods) / service_s))
    top = max(log_weights)
    weights = [math.exp(w - top) for w in log_weights]
    total = sum(weights)
    probabilities = [w / total for w in weights]
    throughput = sum(min(k, pods) / service_s * p for k, p in enumerate(probabilities))
    return throughput, sum(k * p for k, p in enumerate(probabilities)) / throughput


@pytest.mark.parametrize(("workers", "pods"), [(3, 2), (16, 20), (27, 20), (40, 20), (400, 20), (300, 1)])
def test_mva_matches_the_birth_death_chain(workers: int, pods: int) -> None:
    point = mva(workers, 20, 63, pods)[-1]
    throughput, response = _birth_death(workers, 0.020, 0.063, pods)
    assert point.throughput == pytest.approx(throughput, rel=1e-9)
    assert point.response_time_ms == pytest.approx(response * 1000, rel=1e-9)
    assert point.throughput <= pods / 0.063 * (1 + 1e-12)  # never above the plateau


def test_mva_throughput_plateaus_at_capacity() -> None:
    points = mva(200, 20, 63, pods=20)
    assert all(b.throughput >= a.throughput * (1 - 1e-12) for a, b in zip(points, points[1:], strict=False))
    assert points[-1].throughput == pytest.approx(20 / 0.063, rel=1e-6)
    assert points[-1].response_time_ms > 500  # past saturation, waiting grows with L


def test_dimension_with_pods() -> None:
    result = dimension(40, 20, 63, pods=20)
    assert result.request_rate == pytest.approx(40 / 0.083)
    assert result.capacity == pytest.approx(20 / 0.063)
    assert result.saturating_workers == 27
    assert result.utilisation == pytest.approx(result.request_rate / result.capacity)
    assert result.predicted_throughput == pytest.approx(_birth_death(40, 0.020, 0.063, 20)[0])
    measured = dimension(40, 20, 63, pods=20, pod_rate_per_s=6.39)  # the paper's 127.8 responses/s plateau
    assert measured.capacity == pytest.approx(127.8)
    assert measured.saturating_workers == 11  # 127.8 / 12.05 = 10.6: inside the paper's observed L = [10, 16]


def test_invalid_inputs_are_named() -> None:
    with pytest.raises(ModelError, match="think_time_ms and response_time_ms are both 0"):
        worker_rate(0, 0)
    with pytest.raises(ModelError, match="pods=0"):
        service_rate(0, 63)
    with pytest.raises(ModelError, match="think_time_ms=-1"):
        offered_rate(1, -1, 5)


def test_dimension_cli_json_and_text() -> None:
    runner = CliRunner()
    answer = runner.invoke(main, ["dimension", "--workers", "120", "--think-time-ms", "20",
                                  "--response-time-ms", "0", "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output)["request_rate"] == pytest.approx(6000.0)
    answer = runner.invoke(main, ["dimension", "-L", "40", "--think-time-ms", "20", "--response-time-ms", "63",
                                  "--pods", "20", "--timeout-ms", "2000", "--json"])
    data = json.loads(answer.output)
    assert (data["saturating_workers"], data["pods"], data["timeout_ms"]) == (27, 20, 2000)
    text = runner.invoke(main, ["dimension", "-L", "1", "--think-time-ms", "20", "--response-time-ms", "63"])
    assert "12.0 req/s" in text.output
    bad = runner.invoke(main, ["dimension", "-L", "1", "--think-time-ms", "0", "--response-time-ms", "0"])
    assert bad.exit_code == 2 and "both 0" in bad.output


def test_dimension_cli_with_negligible_response_time_needs_the_measured_pod_rate() -> None:
    runner = CliRunner()
    paper = ["dimension", "-L", "120", "--think-time-ms", "20", "--response-time-ms", "0", "--pods", "20"]
    bad = runner.invoke(main, paper)
    assert bad.exit_code == 2 and "response_time_ms=0" in bad.output and "--pod-rate-per-s" in bad.output
    answer = runner.invoke(main, [*paper, "--pod-rate-per-s", "6.39", "--timeout-ms", "0", "--json"])
    assert answer.exit_code == 0, answer.output
    data = json.loads(answer.output)
    assert data["request_rate"] == pytest.approx(6000.0) and data["capacity"] == pytest.approx(127.8)
    assert data["timeout_ms"] is None and data["saturating_workers"] == 3  # 127.8 / 50 req/s per worker


SCENARIO = {"workers": 10, "think_time_ms": 20, "pods": 20, "response_timeout_ms": 10000, "arrival_rate_per_s": None}


def test_region_rule() -> None:
    overload = LoadSection(region="overload", expected_response_time_ms=63)
    # 10 workers offer 120.5 req/s against 317.5: rho 0.38 < 1, needs 27 workers.
    (warning,) = load_region_warnings(SCENARIO, overload)
    assert "rho = 0.38" in warning and "at least 27 workers" in warning
    assert load_region_warnings({**SCENARIO, "workers": 27}, overload) == []
    assert load_region_warnings({**SCENARIO, "workers": 40}, replace(overload, region="underload"))[0].startswith(
        "suite claims underload")
    # Open loop: the arrival rate is the offered load.
    assert load_region_warnings({**SCENARIO, "arrival_rate_per_s": 400}, overload) == []
    assert "higher arrival_rate_per_s" in load_region_warnings({**SCENARIO, "arrival_rate_per_s": 100}, overload)[0]
    # A measured per-pod plateau changes the capacity; the generator limit and timeouts are checked too.
    assert load_region_warnings(SCENARIO, replace(overload, pod_rate_per_s=5)) == []
    warnings = load_region_warnings({**SCENARIO, "workers": 40, "response_timeout_ms": 50},
                                    LoadSection(expected_response_time_ms=63, generator_rate_per_s=390))
    assert len(warnings) == 2 and "time out" in warnings[0] and "load generator" in warnings[1]
    assert load_region_warnings(SCENARIO, LoadSection(region="overload")) == []  # no response time: nothing to say
    # No response timeout (0): nothing times out, and eq. 5 waits for the 63 ms responses.
    assert load_region_warnings({**SCENARIO, "workers": 27, "response_timeout_ms": 0}, overload) == []
    (slow,) = load_region_warnings({**SCENARIO, "workers": 26, "response_timeout_ms": 0}, overload)
    assert "at least 27 workers" in slow and "time out" not in slow
    with pytest.raises(ModelError, match="load.region='sideways'"):
        load_region_warnings(SCENARIO, LoadSection(region="sideways", expected_response_time_ms=63))
