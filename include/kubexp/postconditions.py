"""What must hold after an experiment's data are stored before it counts as finished."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubexp.suite import Suite


def postconditions(suite: Suite, params: Mapping[str, Any], collected: Mapping[str, Any]) -> list[str]:
    """What must hold before an experiment counts as finished: its data are complete and stored.

    `seconds` counts the seconds of [0, duration) with a request (load.jtl.loaded_seconds); `requests`
    and `no_response` (JTL failures_other) are counted inside the same window."""
    from kubexp.load.jtl import too_many_malformed

    problems = []
    duration = int(params["duration_s"])
    requests, no_response = collected.get("requests", 0), collected.get("no_response", 0)
    if requests <= 0:
        problems.append("the load produced no request")
    # 90 %, or all seconds but one for loads under 10 s: JMeter counts the duration from its threads'
    # start, t = 0 is the first sample's start, so the last second may stay empty.
    if collected.get("seconds", 0) < min(0.9 * duration, duration - 1):
        problems.append(f"load rows cover {collected.get('seconds', 0)} s of {duration} s")
    # Above this share of requests without any HTTP response the SUT was down or unreachable, not slow.
    limit_share = suite.load.max_connection_failure_share
    if requests > 0 and no_response / requests > limit_share:
        problems.append(f"{no_response} of {requests} requests ({no_response / requests:.1%}) got no HTTP response "
                        f"(load.max_connection_failure_share in {suite.path}: {limit_share:.1%})")
    malformed, rows, limit = collected.get("malformed", 0), collected.get("rows", 0), suite.load.max_malformed_share
    if too_many_malformed(malformed, rows + malformed, limit):
        problems.append(f"{malformed} malformed JTL lines of {rows + malformed}, more than the allowed {limit:.1%} "
                        f"(load.max_malformed_share in {suite.path})")
    problems += collected.get("metric_problems", [])
    sanity = collected.get("sanity_after")
    if sanity and not sanity["ok"]:
        problems.append(f"the sanity request after the load got no HTTP 200 ({sanity['detail']}): the SUT did not "
                        f"come through the load")
    generator = collected.get("generator") or {}
    if generator.get("saturated") and suite.load.refuse_saturated_generator:
        problems.append("the load generator was the bottleneck (" + "; ".join(generator["reasons"])
                        + f"); load.refuse_saturated_generator is set in {suite.path}")
    if not collected.get("artifacts"):
        problems.append("no raw file was archived")
    return problems

