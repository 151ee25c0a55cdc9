"""Scenario parameters as JMeter properties: our names, the paper's aliases, the equal split."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kubexp import queueing
from kubexp.load.jmeter import GRACE_S, UNBOUNDED_REQUEST_S, _failure, kill_after_s
from kubexp.load.properties import (
    PAPER_ALIASES,
    LoadParameterError,
    arrivals_per_server,
    load_properties,
    open_loop_concurrency,
    request_bound_s,
    threads_per_server,
)
from kubexp.platform.base import Endpoint
from kubexp.settings import REPO_ROOT
from kubexp.suite import LoadSection, load_suite, suite_files

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
    assert props["server_concurrency_limit"] == "1801" == str(open_loop_concurrency(150, 2000, 10000, 60))
    # A run shorter than the timeouts never has more in flight than it started: 150/s x 5 s.
    assert open_loop_concurrency(150, 2000, 10000, 5) == 751
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


def test_zero_timeouts_mean_none_and_reach_jmeter_as_zero() -> None:
    props = load_properties({**PARAMS, "connect_timeout_ms": 0, "response_timeout_ms": 0}, TARGET, servers=2,
                            request_path="/")
    # JMeter's HTTP samplers set a timeout only when it is > 0 (HTTPHC4Impl.setupRequest): 0 is none.
    assert (props["connect_timeout_ms"], props["response_timeout_ms"]) == ("0", "0")
    assert props["connection_timeout_milliseconds"] == "0"
    for plan in ("closed-loop.jmx", "open-loop.jmx"):
        text = (REPO_ROOT / "include" / "jmeter" / plan).read_text()
        assert "${__P(connect_timeout_ms,2000)}" in text and "${__P(response_timeout_ms,10000)}" in text
    assert request_bound_s(0, 10000) == request_bound_s(2000, 0) == math.inf
    assert request_bound_s(2000, 10000) == 12.0
    # Open loop without a timeout: the cap is every arrival of the run (threads start only when needed).
    open_loop = load_properties({**PARAMS, "response_timeout_ms": 0, "arrival_rate_per_s": 300}, TARGET,
                                servers=2, request_path="/")
    assert open_loop["server_concurrency_limit"] == str(150 * 60 + 1)
    with pytest.raises(LoadParameterError, match="response_timeout_ms=-1 must be a number >= 0"):
        load_properties({**PARAMS, "response_timeout_ms": -1}, TARGET, servers=1, request_path="/")


def test_the_master_is_killed_after_a_bounded_time_also_without_timeouts() -> None:
    props = {"duration_s": "60", "connect_timeout_ms": "2000", "response_timeout_ms": "10000"}
    assert kill_after_s(props) == 60 + GRACE_S + 2 * 12
    assert kill_after_s({**props, "response_timeout_ms": "0"}) == 60 + GRACE_S + 2 * UNBOUNDED_REQUEST_S
    assert kill_after_s({**props, "connect_timeout_ms": "0"}) == 60 + GRACE_S + 2 * UNBOUNDED_REQUEST_S
    # Before the DAG's load task limit (longest duration + 15 min) runs out.
    assert kill_after_s({**props, "response_timeout_ms": "0"}) < 60 + 15 * 60


def test_a_failed_distributed_run_names_its_servers() -> None:
    output = "Error in NonGUIDriver java.lang.IllegalArgumentException: Problem loading XML from:'x.jmx'\n"
    servers = ["10.0.0.7:1099", "10.0.0.8:1099"]
    assert _failure(output, "", servers, 1) == (
        "JMeter exited with code 1 (distributed mode, -R 10.0.0.7:1099,10.0.0.8:1099): Error in NonGUIDriver "
        "java.lang.IllegalArgumentException: Problem loading XML from:'x.jmx'")
    assert _failure(output, "", [], 1).startswith("JMeter exited with code 1: Error in NonGUIDriver")


@pytest.mark.parametrize("path", suite_files(), ids=lambda path: Path(path).stem)
def test_every_shipped_scenario_runs_through_properties_and_the_model(path: Path) -> None:
    suite = load_suite(path)
    engines = suite.load.engines
    settings = LoadSection(region="overload", expected_response_time_ms=63)
    for scenario in suite.scenarios():
        props = load_properties(scenario.params, TARGET, servers=engines, request_path="/")
        assert int(props["server_threads"]) * engines == scenario.params["workers"]
        assert props["response_timeout_ms"] == str(scenario.params["response_timeout_ms"])
        assert isinstance(queueing.load_region_warnings(scenario.params, settings), list)
