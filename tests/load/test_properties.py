"""Scenario parameters as JMeter properties: our names, the paper's aliases, the equal split."""

from __future__ import annotations

import pytest

from kubexp.load.properties import (
    PAPER_ALIASES,
    LoadParameterError,
    arrivals_per_server,
    load_properties,
    open_loop_concurrency,
    threads_per_server,
)
from kubexp.platform.base import Endpoint

PARAMS = {"pods": 2, "workers": 12, "think_time_ms": 20.0, "duration_s": 60, "mesh": "native",
          "connect_timeout_ms": 2000, "response_timeout_ms": 10000, "arrival_rate_per_s": None, "tags": ["x"]}
TARGET = Endpoint("10.0.0.9", 30080, "/ignored")


def test_our_names_the_paper_aliases_and_the_per_server_share() -> None:
    props = load_properties(PARAMS, TARGET, servers=3, request_path="/landscape.png?left=1,top=2")
    assert props["workers"] == "12" and props["server_threads"] == "4" and props["server_count"] == "3"
    assert props["think_time_ms"] == "20"  # integral floats without ".0": JMeter parses longs
    assert (props["host"], props["port"], props["path"], props["scheme"]) == \
        ("10.0.0.9", "30080", "/landscape.png?left=1,top=2", "http")
    assert {alias: props[alias] for alias in PAPER_ALIASES} == {
        "clients": "4", "duration_seconds": "60", "think_time_milliseconds": "20", "hostname": "10.0.0.9",
        "port": "30080", "request_path": "/landscape.png?left=1,top=2", "connection_timeout_milliseconds": "2000"}
    assert props["mesh"] == "native" and props["pods"] == "2"
    assert "tags" not in props and "arrival_rate_per_s" not in props  # lists and None are not properties


def test_workers_must_split_equally() -> None:
    assert threads_per_server(40, 4) == 10
    with pytest.raises(LoadParameterError, match="workers=25 cannot be divided equally among 2"):
        threads_per_server(25, 2)
    with pytest.raises(LoadParameterError, match="workers=1 cannot be divided equally among 2"):
        threads_per_server(1, 2)


def test_open_loop_rate_per_server_and_concurrency_cap() -> None:
    props = load_properties({**PARAMS, "arrival_rate_per_s": 300}, TARGET, servers=2, request_path="/")
    assert props["server_arrival_rate_per_s"] == "150"
    # 150 arrivals/s whose requests may each last 2 s + 10 s: 1800 in flight at most, plus one.
    assert props["server_concurrency_limit"] == "1801" == str(open_loop_concurrency(150, 2000, 10000))
    with pytest.raises(LoadParameterError, match="whole multiple of 2"):
        arrivals_per_server(301, 2)
    with pytest.raises(LoadParameterError, match="must be a number > 0"):
        arrivals_per_server(0, 1)


@pytest.mark.parametrize(("name", "value"), [("workers", 2.5), ("workers", 0), ("duration_s", 0),
                                             ("think_time_ms", -1), ("response_timeout_ms", "fast")])
def test_bad_parameters_are_named(name: str, value: object) -> None:
    with pytest.raises(LoadParameterError, match=name):
        load_properties({**PARAMS, name: value}, TARGET, servers=1, request_path="/")


def test_request_path_must_be_absolute() -> None:
    with pytest.raises(LoadParameterError, match="must start with '/'"):
        load_properties(PARAMS, TARGET, servers=1, request_path="landscape.png")
