"""Scenario parameters as JMeter properties (our names plus the paper's aliases).

Every scalar scenario parameter is passed under its own name, so any plan can read it with
`${__P(name)}`. On top of that come the values a plan needs per JMeter engine (one engine per
server in distributed mode) and the property names of the paper's plans, so a plan written for
the paper's framework runs unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubexp.platform.base import Endpoint

# The paper's property name -> ours. `clients` is the thread count of ONE engine: the paper divides
# the total number of workers equally among the JMeter servers and each server runs its share.
PAPER_ALIASES: dict[str, str] = {
    "clients": "server_threads",
    "duration_seconds": "duration_s",
    "think_time_milliseconds": "think_time_ms",
    "hostname": "host",
    "port": "port",
    "request_path": "path",
    "connection_timeout_milliseconds": "connect_timeout_ms",
}

DEFAULTS: dict[str, Any] = {
    "workers": 10, "think_time_ms": 20, "duration_s": 60,
    "connect_timeout_ms": 2000, "response_timeout_ms": 10000, "arrival_rate_per_s": None,
}


class LoadParameterError(ValueError):
    """A scenario parameter cannot be turned into a JMeter run; the message names it."""


def threads_per_server(workers: int, servers: int) -> int:
    """The equal share of `workers` each of `servers` engines runs.

    The paper divides workers equally among the JMeter servers. A remainder would make the engines
    unequal (a -G property is the same on every server) or silently change the offered load, so it
    is refused: choose `workers` as a multiple of the server count.
    """
    if servers < 1:
        raise LoadParameterError(f"need at least one JMeter engine, got {servers}")
    if workers < servers or workers % servers:
        raise LoadParameterError(
            f"workers={workers} cannot be divided equally among {servers} JMeter servers; "
            f"choose a multiple of {servers} (e.g. {max(servers, workers - workers % servers)}) "
            f"or change load.servers"
        )
    return workers // servers


def arrivals_per_server(rate: Any, servers: int) -> int:
    """The equal share of an open-loop arrival rate per engine, in whole requests per second.

    JMeter's Arrivals Thread Group takes whole arrivals per time unit (a fractional rate leaves it idle),
    so the total rate must be a whole multiple of the server count, like `workers`.
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise LoadParameterError(f"scenario parameter arrival_rate_per_s={rate!r} must be a number > 0 "
                                 f"(or null for a closed loop)")
    if not float(rate).is_integer() or int(rate) % servers:
        raise LoadParameterError(
            f"arrival_rate_per_s={rate!r} cannot be divided into whole requests per second among {servers} JMeter "
            f"engines; choose a whole multiple of {servers}"
        )
    return int(rate) // servers


def property_text(value: Any) -> str:
    """How a value is written as a JMeter property (integral floats without '.0', booleans lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(params: Mapping[str, Any], name: str, minimum: float) -> float:
    value = params.get(name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
        raise LoadParameterError(f"scenario parameter {name}={value!r} must be a number >= {minimum:g}")
    return float(value)


def request_bound_s(connect_timeout_ms: float, response_timeout_ms: float) -> float:
    """The longest one request can last, in seconds: both timeouts; infinite when either is 0 (none).

    JMeter's HTTP samplers set a timeout only when it is > 0, so 0 passes through as "no timeout"."""
    if connect_timeout_ms == 0 or response_timeout_ms == 0:
        return math.inf
    return (connect_timeout_ms + response_timeout_ms) / 1000.0


def open_loop_concurrency(rate_per_s: float, connect_timeout_ms: float, response_timeout_ms: float,
                          duration_s: float) -> int:
    """Threads an open-loop engine may use: enough for `rate` requests that all run into their timeouts.

    With this cap the arrival schedule is never held back by busy threads (no coordinated omission)
    unless requests outlive both timeouts. An engine never has more requests in flight than it started,
    rate * duration_s, so without a timeout (0) that is the cap (threads are started only when needed).
    """
    in_flight_s = min(request_bound_s(connect_timeout_ms, response_timeout_ms), duration_s)
    return max(1, math.ceil(rate_per_s * in_flight_s) + 1)


def load_properties(params: Mapping[str, Any], endpoint: Endpoint, *, servers: int,
                    request_path: str) -> dict[str, str]:
    """All properties for one run: scalar scenario parameters, per-engine values, target, aliases."""
    props = {
        name: property_text(value) for name, value in params.items()
        if value is not None and isinstance(value, str | int | float | bool)
    }
    workers = _number(params, "workers", 1)
    if not workers.is_integer():
        raise LoadParameterError(f"scenario parameter workers={params.get('workers')!r} must be a whole number")
    duration = _number(params, "duration_s", 1)
    if not duration.is_integer():
        raise LoadParameterError(f"scenario parameter duration_s={params.get('duration_s')!r} must be whole seconds")
    think = _number(params, "think_time_ms", 0)
    connect_timeout = _number(params, "connect_timeout_ms", 0)  # 0: none
    response_timeout = _number(params, "response_timeout_ms", 0)
    if not request_path.startswith("/"):
        raise LoadParameterError(f"request path {request_path!r} must start with '/'")
    props.update({
        "workers": property_text(workers),
        "server_count": str(servers),
        "server_threads": str(threads_per_server(int(workers), servers)),
        "duration_s": property_text(duration),
        "think_time_ms": property_text(think),
        "connect_timeout_ms": property_text(connect_timeout),
        "response_timeout_ms": property_text(response_timeout),
        "scheme": endpoint.scheme,
        "host": endpoint.host,
        "port": str(endpoint.port),
        "path": request_path,
    })
    if params.get("arrival_rate_per_s") is not None:
        rate = arrivals_per_server(params["arrival_rate_per_s"], servers)
        props["arrival_rate_per_s"] = property_text(params["arrival_rate_per_s"])
        props["server_arrival_rate_per_s"] = str(rate)
        props["server_concurrency_limit"] = str(open_loop_concurrency(rate, connect_timeout, response_timeout,
                                                                      duration))
    for alias, ours in PAPER_ALIASES.items():
        props[alias] = props[ours]
    return props
