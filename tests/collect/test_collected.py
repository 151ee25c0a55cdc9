"""The collection envelope: what collectors return and the store takes, joined by `+`."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from kubexp.records import Artifact, Collected, MetricSeries, PlatformEvent

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_joining_keeps_order_and_what_no_collector_gave_stays_uncollected() -> None:
    first = Collected(load=pd.DataFrame({"t": [0]}), events=[PlatformEvent(0, AT, "a", "Restarted", "r1")],
                      facts={"jtl": {"rows": 1}})
    second = Collected(events=[PlatformEvent(1, AT, "b", "OOMKilled", "r1")], artifacts=[Artifact("log", "x", "0", 1)],
                       facts={"empty_queries": []})
    joined = first + second
    assert joined.load is first.load
    whole = {"requests": 1}
    assert (Collected(series=[]) + Collected(load=first.load, load_whole=whole)).load_whole is whole  # with its frame
    assert [e.source for e in joined.events or []] == ["a", "b"]
    assert joined.artifacts == second.artifacts and joined.facts == {"jtl": {"rows": 1}, "empty_queries": []}
    assert joined.series is None  # not collected: storing keeps the kind's earlier rows
    assert (Collected() + Collected(series=[])).series == []  # collected, none found: storing replaces them


def test_joining_refuses_two_load_frames_and_a_fact_given_twice() -> None:
    frame = pd.DataFrame({"t": [0]})
    with pytest.raises(ValueError, match="two collectors returned a load frame"):
        Collected(load=frame) + Collected(load=frame)  # noqa: B018 - the join itself is what is tested
    with pytest.raises(ValueError, match="two collectors returned the facts jtl"):
        Collected(facts={"jtl": 1}) + Collected(series=[MetricSeries("s", "q", {})], facts={"jtl": 2})  # noqa: B018
