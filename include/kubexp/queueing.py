"""The paper's load model (section 4): offered rate (eq. 5), utilisation, and a closed queueing network.

Workers W = {w_1..w_L} run a closed loop: send, wait for the response (t_resp) or the load generator's
timeout (t_timeout), think (t_delay), repeat. Pods P = {p_1..p_J} serve mu_j = 1 / t_resp,min each.

    lambda = sum_l 1 / (min(t_resp, t_timeout) + t_delay)        (eq. 5)

A timeout of 0 (or None) means none: t_timeout = infinity, as in the paper's experiments.
    mu = sum_j mu_j,   rho = lambda / mu   (meaningful while rho < 1: the loop slows itself down)

For throughput and response time against L, the workers are the think-time (delay) station and the
pods one station with J servers (the paper's <T/M/M/c>-PS with T = L, c = J), solved exactly by
mean value analysis with a load-dependent service rate min(k, J) * mu_j. Times are in milliseconds,
rates per second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubexp.suite import LoadSection

import numpy as np


class ModelError(ValueError):
    """Inputs the model cannot use; the message names the parameter."""


def _positive(name: str, value: float, *, zero_ok: bool = False) -> float:
    if math.isnan(value) or value < 0 or (value == 0 and not zero_ok):
        raise ModelError(f"{name}={value!r} must be {'>= 0' if zero_ok else '> 0'}")
    return float(value)


def timeout_or_inf(timeout_ms: float | None) -> float:
    """The load generator's timeout t_time-out in ms; None or 0 mean none (infinity)."""
    if timeout_ms is None:
        return math.inf
    value = _positive("timeout_ms", timeout_ms, zero_ok=True)
    return math.inf if value == 0 else value


def worker_rate(think_time_ms: float, response_time_ms: float, timeout_ms: float | None = math.inf) -> float:
    """Requests per second one closed-loop worker offers: 1 / (min(t_resp, t_timeout) + t_delay)."""
    cycle_ms = min(_positive("response_time_ms", response_time_ms, zero_ok=True),
                   timeout_or_inf(timeout_ms)) + _positive("think_time_ms", think_time_ms, zero_ok=True)
    if cycle_ms <= 0:
        raise ModelError("think_time_ms and response_time_ms are both 0: a worker would offer infinite load")
    return 1000.0 / cycle_ms


def offered_rate(workers: int, think_time_ms: float, response_time_ms: float,
                 timeout_ms: float | None = math.inf) -> float:
    """Eq. 5 for L identical workers: lambda = L / (min(t_resp, t_timeout) + t_delay), requests per second."""
    if workers < 0:
        raise ModelError(f"workers={workers} must be >= 0")
    return workers * worker_rate(think_time_ms, response_time_ms, timeout_ms)


def service_rate(pods: int, response_time_ms: float) -> float:
    """mu = J / t_resp,min: what J pods serve per second when each answers in response_time_ms."""
    if pods < 1:
        raise ModelError(f"pods={pods} must be >= 1")
    return pods * 1000.0 / _positive("response_time_ms", response_time_ms)


def utilisation(request_rate: float, capacity: float) -> float:
    """rho = lambda / mu."""
    return request_rate / _positive("service rate", capacity)


@dataclass(frozen=True)
class MvaPoint:
    workers: int  # L
    throughput: float  # X(L), responses per second
    response_time_ms: float  # R(L): queueing + service at the pods
    queue_length: float  # mean requests at the pods (waiting + in service)
    utilisation: float  # busy share of the J pods


def mva(workers: int, think_time_ms: float, service_time_ms: float, pods: int = 1) -> list[MvaPoint]:
    """Exact MVA of L workers (delay station, mean think time Z) and J pods (one J-server station, service S).

    Load-dependent recursion over the population n = 1..L, with p(k | n) the probability of k requests at
    the pods and a(k) = min(k, J) the pods busy with k present:
        R(n) = sum_{k=1}^{n} k * S / a(k) * p(k-1 | n-1),   X(n) = n / (Z + R(n))
        p(k | n) = X(n) * S / a(k) * p(k-1 | n-1)  (k >= 1),   p(0 | n) = Z * X(n) / n * p(0 | n-1)
    The last line (all n workers thinking; product form) replaces the usual 1 - sum_k p(k | n), whose
    cancellation goes wrong near saturation. Timeouts are not modelled (nothing is abandoned).
    """
    if workers < 1 or pods < 1:
        raise ModelError(f"workers={workers} and pods={pods} must both be >= 1")
    think = _positive("think_time_ms", think_time_ms, zero_ok=True) / 1000.0
    service = _positive("service_time_ms", service_time_ms) / 1000.0
    present = np.arange(1, workers + 1, dtype=float)
    per_request = service / np.minimum(present, pods)  # S / a(k), k = 1..L
    marginal = np.zeros(workers + 1)
    marginal[0] = 1.0  # p(. | 0)
    points = []
    for n in range(1, workers + 1):
        response = float(np.dot(present[:n] * per_request[:n], marginal[:n]))
        throughput = n / (think + response)
        nxt = np.zeros(workers + 1)
        nxt[1:n + 1] = throughput * per_request[:n] * marginal[:n]
        nxt[0] = think * throughput / n * marginal[0]
        marginal = nxt
        busy = float(np.dot(np.minimum(np.arange(n + 1), pods), marginal[:n + 1])) / pods
        points.append(MvaPoint(n, throughput, response * 1000.0, throughput * response, busy))
    return points


@dataclass(frozen=True)
class Dimensioning:
    workers: int
    think_time_ms: float
    response_time_ms: float
    timeout_ms: float | None  # None: no timeout
    request_rate: float  # eq. 5, requests per second offered by all workers
    worker_rate: float  # what one worker offers
    pods: int | None = None
    capacity: float | None = None  # mu: the throughput plateau, responses per second
    utilisation: float | None = None  # rho = lambda / mu
    saturating_workers: int | None = None  # smallest L with rho >= 1
    predicted_throughput: float | None = None  # MVA X(L)
    predicted_response_time_ms: float | None = None  # MVA R(L)


def saturating_workers(capacity: float, think_time_ms: float, response_time_ms: float,
                       timeout_ms: float | None = math.inf) -> int:
    """Smallest L whose offered rate reaches the capacity: ceil(mu / per-worker rate)."""
    return max(1, math.ceil(capacity / worker_rate(think_time_ms, response_time_ms, timeout_ms) - 1e-9))


def dimension(workers: int, think_time_ms: float, response_time_ms: float, *, pods: int | None = None,
              timeout_ms: float | None = None, pod_rate_per_s: float | None = None) -> Dimensioning:
    """Eq. 5 for a scenario; with `pods` also capacity, rho, the saturating worker count and MVA predictions.

    response_time_ms: t_resp, for capacity the unloaded response time (the paper's 63 ms). pod_rate_per_s
    replaces 1000 / response_time_ms as mu_j where a measured per-pod plateau is known; it is needed with
    pods when response_time_ms is 0 (the paper's "negligible" response time says nothing about capacity).
    timeout_ms None or 0: no timeout.
    """
    timeout = timeout_or_inf(timeout_ms)
    per_worker = worker_rate(think_time_ms, response_time_ms, timeout)
    result = Dimensioning(workers, think_time_ms, response_time_ms, None if math.isinf(timeout) else timeout_ms,
                          offered_rate(workers, think_time_ms, response_time_ms, timeout), per_worker)
    if pods is None:
        return result
    if pod_rate_per_s is None and response_time_ms == 0:
        raise ModelError("response_time_ms=0 cannot give the pods' capacity (mu_j = 1000 / t_resp would be "
                         "infinite); give the measured responses per second of one pod with pod_rate_per_s "
                         "(kubexp dimension --pod-rate-per-s)")
    per_pod = pod_rate_per_s if pod_rate_per_s is not None else service_rate(1, response_time_ms)
    capacity = pods * _positive("pod_rate_per_s", per_pod)
    point = mva(workers, think_time_ms, 1000.0 / per_pod, pods)[-1] if workers >= 1 else None
    return replace(
        result, pods=pods, capacity=capacity, utilisation=utilisation(result.request_rate, capacity),
        saturating_workers=saturating_workers(capacity, think_time_ms, response_time_ms, timeout),
        predicted_throughput=point.throughput if point else 0.0,
        predicted_response_time_ms=point.response_time_ms if point else None,
    )


LOAD_REGIONS = ("overload", "underload")


def load_region_warnings(params: Mapping[str, Any], settings: LoadSection) -> list[str]:
    """Warnings when a scenario cannot reach the load region its suite claims (pure; preflight records them).

    Rule, with the suite's `load` settings:
      region: 'overload' (rho >= 1 wanted, the paper's usual aim) or 'underload' (rho < 1 wanted);
      expected_response_time_ms: unloaded t_resp (needed for any check);
      pod_rate_per_s: measured mu_j (default 1000 / expected_response_time_ms);
      generator_rate_per_s: what the load generator can send at most (optional).
    Offered lambda is the open-loop arrival_rate_per_s, else eq. 5 with t_resp = expected_response_time_ms
    (the most a closed loop can offer: responses only get slower under load). Capacity mu = pods * mu_j,
    with the scenario's initial `pods`. 'overload' warns when lambda < mu, 'underload' when lambda >= mu;
    both warn when the response timeout is below the expected response time (every request times out; 0 is none)
    and when lambda exceeds generator_rate_per_s (the generator, not the pods, would be the bottleneck).
    """
    region = settings.region
    if region is not None and region not in LOAD_REGIONS:
        raise ModelError(f"load.region={region!r} must be one of {', '.join(LOAD_REGIONS)}")
    response = settings.expected_response_time_ms
    if response is None:
        return []
    workers = int(params.get("workers", 10))
    think = float(params.get("think_time_ms", 20))
    timeout = timeout_or_inf(float(params.get("response_timeout_ms", 10000)))
    pods = int(params.get("pods", 1))
    rate = params.get("arrival_rate_per_s")
    offered = float(rate) if rate is not None else offered_rate(workers, think, float(response), timeout)
    per_pod = float(settings.pod_rate_per_s or service_rate(1, float(response)))
    capacity = pods * per_pod
    rho = offered / capacity
    how = f"offers {offered:.1f} req/s against a capacity of {capacity:.1f} req/s ({pods} pods), rho = {rho:.2f}"
    warnings = []
    if timeout < float(response):
        warnings.append(f"response_timeout_ms={timeout:g} is below the expected response time {response} ms: "
                        f"every request would time out")
    if region == "overload" and rho < 1:
        need = ("a higher arrival_rate_per_s" if rate is not None else
                f"at least {saturating_workers(capacity, think, float(response), timeout)} workers")
        warnings.append(f"suite claims overload (rho >= 1) but the scenario {how}; it needs {need}")
    if region == "underload" and rho >= 1:
        warnings.append(f"suite claims underload (rho < 1) but the scenario {how}")
    generator = settings.generator_rate_per_s
    if generator is not None and offered > float(generator):
        warnings.append(f"the scenario offers {offered:.1f} req/s but the load generator sends at most "
                        f"{float(generator):.1f} req/s: it, not the pods, would limit the load")
    return warnings
